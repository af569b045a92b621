"""Record format: every stage's example round-trips through shards; mismatches name file and field."""

import json

import numpy as np
import pytest

from landiff_jax.data import records
from landiff_jax.data.sources import SyntheticLM
from landiff_jax.lm.config import LMConfig


def random_example(schema, rng):
    example = {}
    for name, field in schema.items():
        if field.dtype == "bool":
            example[name] = rng.random(field.shape) < 0.5
        elif field.dtype.startswith("int"):
            example[name] = rng.integers(0, 100, field.shape).astype(field.dtype)
        else:
            example[name] = rng.standard_normal(field.shape).astype(field.dtype)
    return example


SCHEMAS = {
    "lm": records.lm_schema(max_text=5, text_dim=8, num_codes=7),
    "tokenizer": records.tokenizer_schema(frames=2, height=3, width=4, channels=5),
    "diffusion": records.diffusion_schema((2, 4, 6, 3), text_length=5, text_dim=8, num_codes=7, features=(2, 2, 3, 5)),
    "vae": records.vae_schema(frames=5, height=8, width=12),
}


@pytest.mark.parametrize("stage", records.STAGES)
def test_round_trip_every_stage(tmp_path, stage):
    schema = SCHEMAS[stage]
    rng = np.random.default_rng(0)
    examples = [random_example(schema, rng) for _ in range(5)]
    info = records.DatasetInfo(stage, schema, records.plan_shards(stage, 5, 2), {"note": "test"})
    records.write_dataset(tmp_path / "ds", info, lambda start, count: examples[start:start + count])
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == sorted([records.DATASET_FILE] + [s.file for s in info.shards])
    source = records.RecordSource(tmp_path / "ds")
    assert source.info == info and len(source) == 5
    for i, want in enumerate(examples):
        got = source[i]
        assert set(got) == set(schema)
        for name in schema:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name])


def test_contract_fields():
    lm = records.lm_schema(max_text=4, text_dim=6, num_codes=9)
    assert {k: (v.shape, v.dtype) for k, v in lm.items()} == {
        "text_embedding": ((4, 6), "float32"), "text_mask": ((4,), "bool"), "codes": ((9,), "int32"),
        "frames": ((), "int32"), "motion_score": ((), "float32")}
    assert set(records.diffusion_schema((1, 2, 2, 4), 3, 5, features=(1, 2, 2, 8))) == {
        "latent_mean", "latent_std", "text_embedding", "features"}
    with pytest.raises(records.RecordError, match="semantic condition"):
        records.diffusion_schema((1, 2, 2, 4), 3, 5)


def test_write_refuses_misshaped_example(tmp_path):
    schema = SCHEMAS["tokenizer"]
    bad = {"features": np.zeros((2, 3, 4, 6), np.float32)}
    info = records.DatasetInfo("tokenizer", schema, records.plan_shards("tokenizer", 1, 1))
    with pytest.raises(records.RecordError) as e:
        records.write_dataset(tmp_path / "ds", info, lambda start, count: [bad])
    assert "tokenizer-00000-of-00001.array_record example 0: field 'features' is float32[2, 3, 4, 6], expected float32[2, 3, 4, 5]" in str(e.value)
    assert not (tmp_path / "ds" / records.DATASET_FILE).exists()


def test_reader_names_file_and_field_on_mismatch(tmp_path):
    source = SyntheticLM.for_lm(LMConfig.tiny(), frames=3, max_text=4, seed=0)
    info = records.DatasetInfo("lm", source.schema, records.plan_shards("lm", 6, 4), source.meta)
    records.write_dataset(tmp_path / "ds", info, source.examples)
    meta_file = tmp_path / "ds" / records.DATASET_FILE
    d = json.loads(meta_file.read_text())
    d["fields"]["codes"]["dtype"] = "int64"
    meta_file.write_text(json.dumps(d))
    with pytest.raises(records.RecordError) as e:
        records.RecordSource(tmp_path / "ds")[5]
    message = str(e.value)
    assert "\n" not in message
    assert message == (f"{tmp_path / 'ds' / 'lm-00001-of-00002.array_record'} example 1: "
                       "field 'codes' is int32[10], expected int64[10]")


def test_info_errors(tmp_path):
    with pytest.raises(records.RecordError, match="no dataset here"):
        records.read_info(tmp_path)
    schema = SCHEMAS["tokenizer"]
    info = records.DatasetInfo("tokenizer", schema, records.plan_shards("tokenizer", 3, 2))
    rng = np.random.default_rng(1)
    records.write_dataset(tmp_path / "ds", info, lambda s, n: [random_example(schema, rng) for _ in range(n)])
    records.read_info(tmp_path / "ds").expect("tokenizer", schema, "data")
    with pytest.raises(records.RecordError, match=r"field 'features' is float32\[2, 3, 4, 5\], the config expects"):
        records.read_info(tmp_path / "ds").expect("tokenizer", records.tokenizer_schema(2, 3, 4, 6), "data")
    with pytest.raises(records.RecordError, match="holds 'tokenizer' examples, expected 'lm'"):
        records.read_info(tmp_path / "ds").expect("lm", {}, "data")
    (tmp_path / "ds" / info.shards[1].file).unlink()
    with pytest.raises(records.RecordError, match="tokenizer-00001-of-00002.array_record: shard listed in .* is missing"):
        records.read_info(tmp_path / "ds")


def test_refuses_other_settings_and_foreign_directory(tmp_path):
    schema = SCHEMAS["tokenizer"]
    rng = np.random.default_rng(2)
    make = lambda s, n: [random_example(schema, rng) for _ in range(n)]  # noqa: E731
    info = records.DatasetInfo("tokenizer", schema, records.plan_shards("tokenizer", 3, 2))
    records.write_dataset(tmp_path / "ds", info, make)
    assert records.write_dataset(tmp_path / "ds", info, lambda s, n: 1 / 0) == info  # complete: nothing to do
    other = records.DatasetInfo("tokenizer", schema, records.plan_shards("tokenizer", 4, 2))
    with pytest.raises(records.RecordError, match="already holds a dataset of other settings"):
        records.write_dataset(tmp_path / "ds", other, make)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(records.RecordError, match="exists and is not an unfinished dataset"):
        records.write_dataset(tmp_path / "foreign", info, make)


def test_synthetic_source_is_deterministic_by_seed():
    a = SyntheticLM.for_lm(LMConfig.tiny(), frames=4, max_text=6, seed=3)
    assert a.codes == 6 + 2 * 2 + 6 and a.schema["codes"].shape == (a.codes,)  # groups of 3 frames: I P P | I
    first = list(a.examples(0, 8))
    again = list(SyntheticLM.for_lm(LMConfig.tiny(), frames=4, max_text=6, seed=3).examples(2, 3))
    other = list(SyntheticLM.for_lm(LMConfig.tiny(), frames=4, max_text=6, seed=4).examples(0, 8))
    for x, y in zip(first[2:5], again):
        for name in x:
            np.testing.assert_array_equal(x[name], y[name])
    assert not any(np.array_equal(x["codes"], y["codes"]) for x, y in zip(first, other))
    for e in first:
        records.check_example(e, a.schema, "synthetic")
        n = int(e["text_mask"].sum())
        assert 1 <= n <= 6 and e["text_mask"][:n].all()
        assert not e["text_embedding"][n:].any() and e["text_embedding"][:n].all()
        assert e["codes"].min() >= 0 and e["codes"].max() < 64 and int(e["frames"]) == 4
    assert len({int(e["text_mask"].sum()) for e in first}) > 1


def test_lm_dataset_is_checked_against_the_lm_config(tmp_path):
    lm = LMConfig.tiny()
    source = SyntheticLM.for_lm(lm, frames=4, max_text=4, seed=0)
    info = records.DatasetInfo("lm", source.schema, records.plan_shards("lm", 2, 2), source.meta)
    assert records.check_lm_dataset(info, lm, "data") == 4
    with pytest.raises(records.RecordError, match=r"data: field 'text_embedding' is float32\[4, 32\], the config expects float32\[4, 48\]"):
        records.check_lm_dataset(info, lm.replace(text_dim=48), "data")
    with pytest.raises(records.RecordError, match=r"data: field 'codes' is int32\[16\], the config expects int32\[18\]"):
        records.check_lm_dataset(info, lm.replace(iframe_tokens=7), "data")
    with pytest.raises(records.RecordError, match="codebook of 64, the LM has 32"):
        records.check_lm_dataset(info, lm.replace(codebook_size=32), "data")
    with pytest.raises(records.RecordError, match="meta.frames"):
        records.check_lm_dataset(records.DatasetInfo("lm", source.schema, info.shards), lm, "data")


def test_damaged_record_is_named():
    schema = SCHEMAS["lm"]
    record = records.encode_example(random_example(schema, np.random.default_rng(3)), schema)
    with pytest.raises(records.RecordError, match=r"^s.array_record example 4: not a readable example \(ValueError: field "
                       r"'motion_score' runs past the record's end\)$"):
        records.decode_example(record[:-1], schema, "s.array_record example 4")
    with pytest.raises(records.RecordError, match=r"^s: not a readable example \(JSONDecodeError"):
        records.decode_example(record[:60], schema, "s")
    with pytest.raises(records.RecordError, match="no example header"):
        records.decode_example(b"\x93NUMPY" + record[6:], schema, "s")
