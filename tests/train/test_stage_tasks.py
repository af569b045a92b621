"""The tokenizer, diffusion (base, and control started from a converted checkpoint) and VAE
tasks train through the one trainer on tiny datasets written in the record format: the loss is
finite, the trainable params move, the frozen ones do not; the tokenizer, a few hundred updates
long, learns to reconstruct without a collapse of its codebook."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from landiff_jax import checkpoint, config_file
from landiff_jax.config_file import ConfigError
from landiff_jax.data import pipeline, records
from landiff_jax.data.sources import SyntheticClips, plan_dataset
from landiff_jax.diffusion import losses as diffusion_losses
from landiff_jax.diffusion.config import DiffusionTrainConfig, DiTConfig, SemanticCondConfig
from landiff_jax.tokenizer import losses as tokenizer_losses
from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.tokenizer.model import VideoVQ
from landiff_jax.train import loop
from landiff_jax.train.checkpointing import read_state
from landiff_jax.train.config import CheckpointConfig, DataConfig, OptimizerConfig, TrainConfig
from landiff_jax.train.task import make_task
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.losses import VAELossConfig

REPO = Path(__file__).resolve().parents[2]
FRAMES, BATCH, STEPS = 3, 2, 3
TOKENIZER = TokenizerConfig.tiny(theia=None)
DIT = DiTConfig.tiny(hidden_size=32, num_heads=2, num_layers=2, control_layers=1, time_embed_dim=16,
                     text_length=4, text_hidden_size=8, latent_height=8, latent_width=12,
                     semantic=SemanticCondConfig(z_channels=TOKENIZER.output_channels, ch=32, ch_mult=(1.0, 1.0),
                                                 num_res_blocks=0, out_dim=8, target_dim=4))


def run_config(stage: str, model, path: Path, **kw) -> TrainConfig:
    return TrainConfig(stage=stage, model=model, steps=STEPS, batch_size=BATCH, log_every=1, compute_dtype="float32",
                       optimizer=OptimizerConfig(learning_rate=1e-3, decay="constant"),
                       checkpoint=CheckpointConfig(every=STEPS, async_save=False),
                       data=DataConfig(path=str(path), frames=FRAMES, prefetch=1, **kw.pop("data", {})), **kw)


def write(path: Path, stage: str, schema: dict, examples: list[dict]) -> Path:
    info = records.DatasetInfo(stage, schema, records.plan_shards(stage, len(examples), len(examples)))
    records.write_dataset(path, info, lambda start, count: examples[start:start + count])
    return path


def train(config: TrainConfig, workdir: Path):
    """(task, final state) of a run of STEPS updates."""
    task = make_task(config)
    options = pipeline.DataOptions(global_batch=BATCH, seed=0, prefetch_batches=1, read_threads=1)
    state = loop.train(config, task, pipeline.batches(Path(config.data.path), options), workdir, tensorboard=False)
    return task, jax.device_get(state)


def moved(before, after) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def finite_losses(workdir: Path) -> list[float]:
    import json

    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert len(losses) == STEPS and np.all(np.isfinite(losses)), losses
    return losses


def initial(task, config: TrainConfig):
    """(trainable, frozen, model_state) of the run's first step (the trainer's init key)."""
    return jax.device_get(task.init(jax.random.split(jax.random.PRNGKey(config.seed))[0]))


# a tiny tokenizer (the learning test of the tokenizer stage; configs/tokenizer_tiny.py otherwise)
SMALL_TOKENIZER = TokenizerConfig.tiny(
    theia=None, image_size=(2, 3), image_channels=8, output_channels=8, mean_std_dim=8, num_heads=2, width=32,
    num_layers=1, token_size=8, codebook_size=8, codebook_dim=4, temporal_size=2, pframe_tokens=2,
    num_latent_tokens=6, rope_max_height=2, rope_max_width=3)
LEARN_STEPS = 200


def feature_videos(rng, first, second, prototypes):
    """Synthetic feature videos [b 2 h w c]: frame 0 prototype `first` of 4, frame 1 `second` of 4
    others, plus noise 0.1."""
    clips = np.stack([prototypes[0, first], prototypes[1, second]], axis=1)
    return (clips + 0.1 * rng.standard_normal(clips.shape)).astype(np.float32)


@jax.jit
def reconstruct(params, features):
    """Features → the tokenizer's codes → decoded features (the inference path)."""
    model = VideoVQ(SMALL_TOKENIZER)
    codes = model.apply({"params": params}, features, method=VideoVQ.encode_features)
    return codes, model.apply({"params": params}, codes, features.shape[1], method=VideoVQ.decode_codes)


def test_tokenizer_learns_through_the_trainer_without_collapse(tmp_path):
    """configs/tokenizer_tiny.py's recipe (AdamW, constant lr, EMA codebook with k-means init and
    dead-code replacement, rotation trick) at a smaller size and lr 3e-3 trains 200 updates through
    the one trainer; on held-out clips (the inference path: encode, nearest code of the EMA codebook,
    decode) the reconstruction MSE falls well below the untrained model's, every code in use."""
    m, rng = SMALL_TOKENIZER, np.random.default_rng(0)
    prototypes = rng.standard_normal((2, 4, *m.image_size, m.image_channels)).astype(np.float32)
    pairs = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2)  # the 16 clip kinds
    examples = [{"features": f} for f in feature_videos(rng, *np.tile(pairs, (4, 1)).T, prototypes)]
    data = write(tmp_path / "data", "tokenizer", records.tokenizer_schema(2, *m.image_size, m.image_channels),
                 examples)
    config = config_file.load(REPO / "configs" / "tokenizer_tiny.py", [
        f"steps={LEARN_STEPS}", "batch_size=16", "optimizer.learning_rate=3e-3", "log_every=50",
        f"checkpoint.every={LEARN_STEPS}", "checkpoint.async_save=False", f"data.path={data}", "data.frames=2",
        "data.prefetch=1"])
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, model=m))
    task = make_task(config)
    options = pipeline.DataOptions(global_batch=config.batch_size, seed=0, prefetch_batches=1, read_threads=1)
    state = jax.device_get(loop.train(config, task, pipeline.batches(data, options), tmp_path / "run",
                                      tensorboard=False))

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(50, LEARN_STEPS + 1, 50))
    assert all(np.isfinite(r["loss"]) and r["iframe_loss"] > 0 and r["pframe_loss"] > 0 for r in rows), rows
    trainable, frozen, model_state = initial(task, config)
    assert frozen == {} and moved(trainable, state.trainable)
    assert not model_state["codebook"]["initted"] and state.model_state["codebook"]["initted"]  # k-means ran

    held_out = feature_videos(rng, *pairs.T, prototypes)
    errors = {}
    for name, (params, codebook) in {"untrained": (trainable, model_state),
                                     "trained": (state.trainable, state.model_state)}.items():
        codes, decoded = jax.device_get(reconstruct(tokenizer_losses.inference_params(params, codebook), held_out))
        errors[name] = (float(np.mean((decoded - held_out) ** 2)), len(np.unique(codes)))
    assert errors["trained"][0] < 0.3 * errors["untrained"][0], errors
    # the codes tell the clips apart: far better than the best code-blind guess, the mean clip
    assert errors["trained"][0] < 0.5 * np.mean((held_out - held_out.mean(0)) ** 2), errors
    assert errors["trained"][1] == m.codebook_size, f"codes used: {errors}"


def diffusion_examples(n: int, with_codes: bool) -> list[dict]:
    rng = np.random.default_rng(1)
    c = DIT
    latent = (FRAMES, c.latent_height, c.latent_width, c.in_channels)
    out = []
    for _ in range(n):
        example = {"latent_mean": rng.standard_normal(latent, np.float32),
                   "latent_std": np.full(latent, 0.1, np.float32),
                   "text_embedding": rng.standard_normal((c.text_length, c.text_hidden_size), np.float32)}
        if with_codes:
            example["codes"] = rng.integers(0, TOKENIZER.codebook_size, TOKENIZER.num_codes(FRAMES), np.int32)
        out.append(example)
    return out


@pytest.fixture(scope="module")
def diffusion_data(tmp_path_factory):
    """Examples with the fields of the control task (the base task reads a subset)."""
    task = make_task(run_config("diffusion", DiffusionTrainConfig(dit=DIT, tokenizer=TOKENIZER), Path(".")))
    schema = {name: records.Field(spec.shape, np.dtype(spec.dtype).name) for name, spec in task.example.items()}
    return write(tmp_path_factory.mktemp("diffusion"), "diffusion", schema, diffusion_examples(8, True))


def test_base_dit_trains_on_sampled_posterior_latents(diffusion_data, tmp_path):
    model = DiffusionTrainConfig(dit=DIT, mode="base", scale_factor=0.7)
    config = run_config("diffusion", model, diffusion_data)
    task, state = train(config, tmp_path / "run")
    assert set(task.example) == {"latent_mean", "latent_std", "text_embedding"}  # the codes are not read
    finite_losses(tmp_path / "run")
    assert moved(initial(task, config)[0], state.trainable) and state.frozen == {}
    saved = read_state(tmp_path / "run" / "checkpoints")  # what the next stage reads of a finished run
    assert int(saved["step"]) == STEPS and not moved(saved["trainable"], state.trainable)


@pytest.mark.slow  # ~70 s of CPU (the control DiT and the frozen tokenizer's decoder compile)
def test_control_branch_starts_from_a_converted_checkpoint(diffusion_data, tmp_path):
    model = DiffusionTrainConfig(dit=DIT, tokenizer=TOKENIZER, mode="control", semantic_source="codes")
    # a converted checkpoint's diffusion component: the whole model, the tokenizer copy with its encoder
    trainable, frozen, _ = jax.device_get(diffusion_losses.init_train_state(model, jax.random.PRNGKey(7)))
    params = diffusion_losses.merge_params(trainable, frozen)
    params["tokenizer"] = {**params["tokenizer"], "encoder": {"unused": np.ones((2, 2), np.float32)}}
    params["dit"]["main"] = jax.tree.map(lambda x: x + 0.01, params["dit"]["main"])  # not the from-scratch draw
    ckpt = tmp_path / "ckpt"
    checkpoint.save_component(ckpt, "diffusion", params)

    config = run_config("diffusion", model, diffusion_data, init_from=str(ckpt))
    task, state = train(config, tmp_path / "run")
    finite_losses(tmp_path / "run")
    assert not moved(params["dit"]["main"], state.frozen["dit"]["main"])  # the checkpoint's, never updated
    assert not moved(params["tokenizer"]["decoder"], state.frozen["tokenizer"]["decoder"])
    assert "encoder" not in state.frozen["tokenizer"]  # what the stage does not read is left out
    assert moved(trainable["dit"]["control"], state.trainable["dit"]["control"])

    wrong = dataclasses.replace(model, dit=dataclasses.replace(DIT, hidden_size=64, num_heads=4))
    with pytest.raises(ConfigError, match="the stage's config expects"):
        make_task(run_config("diffusion", wrong, diffusion_data)).load(str(ckpt))


@pytest.mark.slow  # ~140 s of CPU compiling and running 3D convolutions
def test_vae_task_trains_on_synthetic_clips(tmp_path):
    vae = VAEConfig.tiny(ch=8, num_groups=4, ch_mult=(1, 2), temporal_compress_times=2)
    source = SyntheticClips(frames=vae.video_frames(FRAMES), height=16, width=16, seed=0)
    data = tmp_path / "data"
    records.write_dataset(data, plan_dataset(source, 4, 4), source.examples)
    assert records.read_info(data).fields == {"video": records.Field((5, 16, 16, 3), "uint8")}
    config = run_config("vae", VAELossConfig(vae=vae), data, data={"video_size": (16, 16)})
    task, state = train(config, tmp_path / "run")
    finite_losses(tmp_path / "run")
    assert moved(initial(task, config)[0], state.trainable)
