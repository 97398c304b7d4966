"""Typed run configuration: one dataclass per Hydra config group, registered in Hydra's ConfigStore.

The dataclass defaults are the only defaults: the group files of ``configs/`` set only what their option
changes. Hydra composes ``configs/train.yaml`` onto these schemas, so a misspelled key, or a value outside a
field's choices (the :class:`Choice` types), fails at composition time; each dataclass normalizes its
values on construction (``__post_init__``), and ``nexus_pretrain.config_checks.validate`` then only reads:
it checks values and cross-field constraints and raises ``ConfigError`` with a one-line message naming the
key and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Dict, Iterable, List, Optional

from hydra.core.config_store import ConfigStore

from nexus_pretrain.data.layout import MIXTURE_MODES
from nexus_pretrain.model.float8 import DEFAULT_FAST_ACCUM, DEFAULT_HEAD, FLOAT8_EVALS, FLOAT8_RECIPES, float8_mode
from nexus_pretrain.model.presets import RESIDUAL_DTYPES
from nexus_pretrain.optim.schedule import DECAY_SHAPES, SCHEDULES
from nexus_pretrain.optim.traits import NEXUS_VARIANTS, OPTIMIZERS, OUTER_OPTIMIZERS


class Choice(str, Enum):
    """A config field's set of string options, which OmegaConf enforces while Hydra composes. Members are
    their value: equal to it, hashed, printed and formatted as it; and a built config holds the plain
    string (see :class:`Section`), so the code, checkpoints and logs only ever see strings."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __repr__(self) -> str:
        return repr(self.value)


def choice(name: str, values: Iterable[str]) -> Any:
    """A :class:`Choice` type whose members are ``values`` (each named as its value, which OmegaConf
    matches against YAML and command-line strings)."""
    return Choice(name, [(value, value) for value in values], module=__name__)


class Section:
    """Base of the config dataclasses: construction stores each Choice field's plain string value."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Choice):
                setattr(self, f.name, value.value)


BACKENDS = ("single", "fsdp2", "deepspeed")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
DIST_BACKENDS = ("auto", "nccl", "gloo")
ATTENTIONS = ("auto", "sdpa", "flash")
DATA_SOURCES = ("embedded", "shards", "sft")
SFT_TEMPLATES = ("auto", "chat", "default")
SFT_OVERLONG = ("truncate", "drop")
WANDB_MODES = ("offline", "online", "disabled")
RESUME_MODES = ("never", "auto")
"""trainer.resume's values other than a checkpoint path."""

Attention = choice("Attention", ATTENTIONS)
ResidualDtype = choice("ResidualDtype", RESIDUAL_DTYPES)
Float8Recipe = choice("Float8Recipe", FLOAT8_RECIPES)
Float8Eval = choice("Float8Eval", FLOAT8_EVALS)
OptimizerName = choice("OptimizerName", OPTIMIZERS)
OuterOptimizer = choice("OuterOptimizer", OUTER_OPTIMIZERS)
NexusVariant = choice("NexusVariant", NEXUS_VARIANTS)
ScheduleName = choice("ScheduleName", SCHEDULES)
DecayShape = choice("DecayShape", DECAY_SHAPES)
DataSource = choice("DataSource", DATA_SOURCES)
MixtureMode = choice("MixtureMode", MIXTURE_MODES)
BackendName = choice("BackendName", BACKENDS)
Device = choice("Device", DEVICES)
Precision = choice("Precision", PRECISIONS)
DistBackend = choice("DistBackend", DIST_BACKENDS)
WandbMode = choice("WandbMode", WANDB_MODES)


@dataclass
class ModelConfig(Section):
    """Llama-style decoder. ``preset`` picks the shape; any field set here overrides the preset."""

    preset: str = "tiny"
    """One of nexus_pretrain.model.presets.PRESETS (tiny, llama_130m, ..., llama_3b)."""
    dim: Optional[int] = None
    """Hidden size."""
    n_layers: Optional[int] = None
    """Number of transformer blocks."""
    n_heads: Optional[int] = None
    """Query heads; dim must be divisible by it."""
    n_kv_heads: Optional[int] = None
    """Key/value heads (grouped-query attention); must divide n_heads."""
    ffn_dim: Optional[int] = None
    """SwiGLU hidden size."""
    vocab_size: Optional[int] = None
    """Embedding rows; None takes the tokenizer's vocabulary rounded up to a multiple of 64."""
    max_seq_len: Optional[int] = None
    """Longest sequence the RoPE cache covers; None uses data.seq_len."""
    rope_theta: Optional[float] = None
    """RoPE base frequency."""
    norm_eps: Optional[float] = None
    """RMSNorm epsilon."""
    tie_embeddings: Optional[bool] = None
    """Share input embedding and output head weights."""
    init_std: Optional[float] = None
    """Std of the normal init of linear and embedding weights."""
    attention: Attention = Attention.auto
    """auto (flash-attn if installed and on GPU, else SDPA), sdpa or flash."""
    residual_dtype: Optional[ResidualDtype] = ResidualDtype.bfloat16
    """bfloat16: under autocast the residual stream is bf16 on every backend (backend single casts the
    embedding output; fsdp2 and deepspeed compute with bf16 weights anyway): less activation memory and
    traffic, 1B 55.3% -> 56.6% MFU on an H100. embedding (or null, as run configs saved before bfloat16
    became the default say): it keeps the embedding's dtype, fp32 under backend single."""
    float8: str = "false"
    """FP8 training of the blocks' large linear layers through torchao (docs/performance-fp8.md): false,
    true (an error on a GPU without FP8) or auto (on GPUs with FP8, compute capability 8.9+; CPU runs stay
    as they are; the run records auto as what it did: true or false). Backends single and fsdp2 (FP8
    weight all-gather with tensorwise); not deepspeed.
    A string, not a Choice: YAML and the command line give true/false as booleans, which OmegaConf refuses
    for an enum field; construction lower-cases them to one of model/float8.py's FLOAT8_MODES."""
    float8_recipe: Float8Recipe = Float8Recipe.tensorwise
    """tensorwise (one scale per tensor, fastest) or rowwise (one scale per row)."""
    float8_min_dim: Optional[int] = None
    """A linear layer converts when its input and output sizes are both at least this; null: 2048, where
    FP8 was measured to pay (model/float8.py DEFAULT_MIN_DIM)."""
    float8_fast_accum: bool = DEFAULT_FAST_ACCUM
    """The FP8 matmuls of the backward pass (input and weight gradients) accumulate in the GPU's fast,
    lower-precision mode, as the forward's always do (the default: model/float8.py DEFAULT_FAST_ACCUM).
    A plain value, not null, so that a run's config.yaml records what it trained with."""
    float8_head: bool = DEFAULT_HEAD
    """The output head's matmul in FP8 too (when its sizes pass float8_min_dim); false keeps it bf16 (the
    default: model/float8.py DEFAULT_HEAD)."""
    float8_eval: Float8Eval = Float8Eval.fp8
    """The forward of an FP8 run's evaluated losses (held-out, OOD, downstream; not gradient cosines): fp8,
    as it trains, or bf16, the same weights through bf16 matmuls, so that its val/* compare with bf16 runs'
    (with fsdp2 the weights are then all-gathered in bf16, not FP8)."""
    float8_cache_weights: str = "false"
    """Keep each FP8 layer's weight cast to FP8 until the weight changes, instead of casting it in every
    micro-batch's forward (model/float8_weights.py): one cast per optimizer step under gradient
    accumulation, the same numbers; 1 byte per converted weight kept. false; true (tensorwise scaling and
    backend single, refused otherwise); auto (where they can be kept: tensorwise on backend single).
    Off by default: on an H200 it gave at most 1.3% and cost 1.4-2.7 GiB (docs/performance-fp8.md)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.float8 = float8_mode(self.float8)
        self.float8_cache_weights = float8_mode(self.float8_cache_weights)


@dataclass
class OptimConfig(Section):
    """Optimizer: a plain outer optimizer (adamw, muon) or Nexus wrapping one (paper Alg. 3)."""

    name: OptimizerName = OptimizerName.adamw
    """adamw, muon or nexus."""
    lr: float = 3e-3
    """Peak (outer) learning rate; the schedule scales it."""
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    """Adam betas (paper Tab. 6)."""
    eps: float = 1e-10
    """Adam epsilon (paper Tab. 6)."""
    weight_decay: float = 0.2
    """Decoupled weight decay (paper Tab. 6: 0.2 for AdamW/Nexus, 0.1 for Muon)."""
    max_grad_norm: float = 1.0
    """Clip to this global L2 norm before the outer step (0 disables); the clip coefficient is logged as
    clip_coef. What is clipped: adamw and muon clip the step's mean gradient; nexus clips its
    pseudo-gradient (the inner displacement, of norm at most inner_lr x inner_steps, so a clip of 1.0
    only acts when inner_lr x inner_steps > 1); the inner gradients are never clipped (each inner step
    is normalized, so clipping them would change nothing)."""
    fused: Optional[bool] = None
    """Fused AdamW kernel; None uses it on GPU."""
    outer: OuterOptimizer = OuterOptimizer.adamw
    """Nexus only: the outer optimizer, adamw or muon."""
    inner_lr: float = 0.01
    """Nexus only: the inner normalized-SGD step size gamma (paper Tab. 6: 0.01)."""
    inner_steps: int = 4
    """K: the global batch splits into K inner batches of global_batch / K sequences, and Nexus takes one
    inner step per inner batch. Part of the algorithm, independent of the GPU count and micro-batch
    (data/layout.py). Every optimizer sees the same inner batches in the same order, so a paired AdamW run
    differs only in the optimizer; for adamw/muon K changes no update (their gradient is the mean over the
    whole global batch). 4 fits the tiny CPU default (global batch 16); experiment files set their own."""
    variant: NexusVariant = NexusVariant.nexus
    """Nexus only: nexus (Alg. 3), nexus_dot (unnormalized inner step), nsgd (one normalized step on the
    global batch's gradient: K = 1), random or parallel (controls without the alignment term)."""
    offload_anchor: bool = False
    """Nexus only: keep the fp32 anchor copy in pinned CPU memory."""
    inner_lr_follows_schedule: bool = False
    """Nexus only: scale gamma by the LR schedule's multiplier too (paper keeps it fixed)."""
    muon_momentum: float = 0.95
    """Muon only: momentum of the orthogonalized update."""
    muon_ns_steps: int = 5
    """Muon only: Newton-Schulz iterations."""
    muon_lr: Optional[float] = None
    """Muon only: LR of the 2-D hidden matrices; None uses lr."""


@dataclass
class ScheduleConfig(Section):
    """Learning-rate multiplier over steps: warmup-stable-decay (wsd), cosine or constant.

    Phase lengths take either form: a value below 1 is a fraction of trainer.max_steps (0.1 = the first
    10% of the run, rounded to whole steps), a whole number >= 1 is a count of steps (the paper's
    1000/10000, as the experiment files set them). The defaults are fractions, so any trainer.max_steps
    gets a schedule that fits. Decays reach min_lr_ratio one step after the last update, so the last
    update never runs at the floor (with the default floor 0 its learning rate is still > 0).
    """

    name: ScheduleName = ScheduleName.wsd
    """wsd, cosine or constant."""
    warmup_steps: float = 0.1
    """Linear warmup from 0: a fraction < 1 of trainer.max_steps, or whole steps (paper: 1000 steps)."""
    decay_steps: float = 0.3
    """wsd only: the final decay phase, a fraction < 1 of trainer.max_steps or whole steps (paper: 10000)."""
    decay_shape: DecayShape = DecayShape.linear
    """wsd only: shape of the decay, linear, cosine or sqrt (1 - sqrt)."""
    min_lr_ratio: float = 0.0
    """Multiplier the decay reaches at step trainer.max_steps, one step after the last update."""


@dataclass
class SFTDataConfig:
    """Instruction data for data.source=sft: prompt/response pairs or chat messages, loss on responses only."""

    dataset: Optional[str] = None
    """A Hugging Face hub dataset name, a local .jsonl/.json/.parquet file (or a folder of them), or
    ``embedded_math`` (word problems generated from the embedded math corpus's templates, for CPU runs)."""
    subset: Optional[str] = None
    """Hub dataset configuration name (load_dataset's second argument), if the dataset has several."""
    split: str = "train"
    """Split the training examples come from."""
    val_split: Optional[str] = None
    """Split of the held-out examples; None holds out a fixed data.val_fraction of ``split`` instead."""
    messages_field: str = "messages"
    """Column of chat messages ([{role, content}, ...]); used when the dataset has it, else the
    prompt/response columns are."""
    prompt_field: str = "prompt"
    """Column of the user prompt."""
    response_field: str = "response"
    """Column of the assistant response."""
    system_prompt: Optional[str] = None
    """System message put before every conversation that has none."""
    template: str = "auto"
    """auto: the tokenizer's chat template if it has one, else the default one (nexus_pretrain/sft/template.py);
    chat: the tokenizer's (an error if it has none); default: always the default one."""
    overlong: str = "truncate"
    """Examples longer than data.seq_len + 1 tokens: truncate (keep the first seq_len + 1 tokens; dropped
    if no response token is left) or drop."""
    max_examples: Optional[int] = None
    """Use only the first N examples of ``split`` (None: all)."""
    num_proc: Optional[int] = None
    """Processes tokenizing the examples (datasets.map's num_proc); None tokenizes in this process."""


@dataclass
class DataConfig(Section):
    """Where sequences come from and how micro-batches mix domains."""

    name: str = "embedded"
    """Name of the data preset (for reports)."""
    source: DataSource = DataSource.embedded
    """embedded: the corpus shipped in the package; shards: domains prepared by `nexus-data prepare`
    under data.path; sft: the instruction examples of data.sft (OOD domains from data.path's shards, or
    from the embedded corpus when data.path is unset)."""
    path: Optional[str] = None
    """Root folder of the prepared domains (the --out of nexus-data prepare); required when source=shards."""
    tokenizer: Optional[str] = None
    """Tokenizer of source=shards: None is the embedded one, else a Hugging Face tokenizer dir or hub
    name; it must be the one the shards were prepared with."""
    domains: Dict[str, float] = field(default_factory=lambda: {"web": 1.0, "math": 1.0, "code": 1.0})
    """Training domains and their sampling weights (normalized)."""
    fixed_shares: Dict[str, float] = field(default_factory=dict)
    """Domains whose sampling share is fixed (e.g. {math: 0.1} for Math10); the other domains' weights
    are scaled proportionally to fill the rest (paper Sec. 4.3). Presets: data=math10|math40|math70;
    on other presets add a share with +data.fixed_shares.math=0.25."""
    ood_domains: List[str] = field(default_factory=lambda: ["legal"])
    """Held-out domains evaluated for OOD loss, never trained on."""
    seq_len: int = 128
    """Tokens per training sequence."""
    microbatch_domains: MixtureMode = MixtureMode.mixed
    """How domains fill a step's inner batches (optim.inner_steps). mixed: every sequence drawn from the
    mixture (Alg. 3). per_domain: one domain per inner batch, domains cycled uniformly (paper Alg. 1,
    where the mixture weights cancel; refused unless the weights are equal). per_domain_weighted: one
    domain per inner batch, drawn by weight, so domain shares follow the mixture."""
    val_fraction: float = 0.05
    """Fraction of each domain's documents held out for validation."""
    eval_sequences: int = 32
    """Validation sequences per domain scored at each evaluation."""
    num_workers: int = 0
    """Worker processes preparing training micro-batches ahead of the loop (0: in the training
    process). Batches are identical for any value."""
    sft: SFTDataConfig = field(default_factory=SFTDataConfig)
    """Instruction data; read only when source=sft."""


@dataclass
class BackendConfig(Section):
    """How the model is placed and gradients reduced."""

    name: BackendName = BackendName.single
    """single (one device), fsdp2 (PyTorch fully_shard per block, under torchrun) or deepspeed
    (DeepSpeed ZeRO, under torchrun or the deepspeed launcher)."""
    device: Device = Device.auto
    """auto (cuda if available), cpu or cuda."""
    precision: Precision = Precision.auto
    """auto (bf16 on GPU, fp32 on CPU; the run records which), bf16 or fp32. fsdp2 and deepspeed keep fp32
    master weights and compute in bf16 (fsdp2: MixedPrecisionPolicy with fp32 gradient reduction)."""
    dist_backend: DistBackend = DistBackend.auto
    """Process-group backend: auto (nccl on GPU, gloo on CPU), nccl or gloo."""
    zero_stage: int = 1
    """deepspeed: ZeRO stage 1, 2 or 3."""
    cpu_offload: bool = False
    """fsdp2: keep sharded parameters, gradients and optimizer state in CPU memory (CPUOffloadPolicy);
    deepspeed: offload the optimizer state to CPU."""
    replicate: int = 1
    """fsdp2: replica groups for HSDP (shard within a group of world_size/replicate ranks, replicate
    across groups); 1 shards over all ranks."""
    reshard_after_forward: bool = True
    """fsdp2: free gathered block parameters after forward (ZeRO-3 style) and gather again in backward."""
    async_checkpoint: bool = False
    """fsdp2/single: write checkpoints in the background (DCP async_save); the loop only waits for the
    copy to CPU memory."""
    timeout_minutes: int = 30
    """Collective timeout before a hung rank aborts the run."""


@dataclass
class TrainerConfig(Section):
    """The training loop: batch shape, length, checkpoints and evaluation."""

    global_batch: int = 16
    """Sequences per optimizer step, over all ranks and micro-batches."""
    micro_batch: int = 4
    """Sequences per forward/backward on one rank."""
    max_steps: int = 200
    """Optimizer steps."""
    seed: int = 0
    """Seeds the model init and the data order."""
    run_dir: str = "runs/${now:%Y-%m-%d_%H-%M-%S}"
    """Where metrics, checkpoints and the exported model go; by default a new folder named by the start time
    (Hydra's ``now`` resolver, resolved when the config is composed)."""
    log_every: int = 10
    """Steps between metric lines."""
    eval_every: int = 100
    """Steps between validation/OOD evaluations (and at the end); 0 only at the end."""
    checkpoint_every: int = 100
    """Steps between checkpoints (and at the end); 0 only at the end."""
    keep_last: int = 2
    """Checkpoints kept on disk."""
    resume: str = "never"
    """never; auto (continue from the newest intact checkpoint in run_dir, if any); or the path of a
    checkpoint directory (run_dir/checkpoints/step_XXXXXXXX) to continue from. The checkpoint's run config
    must describe the same run (see allow_config_change), and a fresh start needs a run_dir without another run.
    true and false (booleans from YAML or the command line) read as auto and never."""
    skip_nonfinite: int = 0
    """Steps whose loss is NaN/inf that may be skipped (parameters restored, the batch dropped) before
    the run stops; 0 stops at the first one. Skipping checks every step (one host sync per step)."""
    compile: bool = False
    """torch.compile each transformer block, the norm-head-loss and Nexus's inner step."""
    activation_checkpointing: bool = False
    """Recompute block activations in backward to save memory."""
    activation_checkpointing_every: int = 1
    """With activation_checkpointing, recompute every n-th block only (1: all; 2: half of them), trading
    memory for less recomputation."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms (bit-exact resume on GPU)."""
    export_hf: bool = True
    """Write a Hugging Face model directory at the end."""
    init_from: Optional[str] = None
    """Start from pretrained weights (weights only: optimizer, step and schedule start fresh, e.g. for
    SFT): a checkpoint directory (run_dir/checkpoints/step_XXXXXXXX), a run directory (its hf/ export, else
    its newest checkpoint) or a Hugging Face Llama directory. trainer.resume, when it finds a checkpoint,
    wins over it."""
    allow_config_change: List[str] = field(default_factory=list)
    """Keys (e.g. [optim.lr,data.seq_len]) or sections (optim) that a resume may change although they
    change what the run is; without them such a resume is refused (train/run_identity.py lists what may
    always change). Each such resume is recorded in run_dir/config_changes.jsonl."""
    cooldown_from: List[float] = field(default_factory=list)
    """WSD cooldown branches (train/cooldown.py): steps, or fractions < 1 of max_steps, in the stable phase.
    The checkpoint at each is kept, and after the run a branch from each decays to the end in
    run_dir/cooldown/step_XXXXXXXX, giving fully decayed endpoints along the run (nexus-analyze isoloss)."""
    eval_tasks: List[str] = field(default_factory=list)
    """Benchmarks whose gold-answer loss (nexus-eval's downstream loss, the same code) is computed at every
    evaluation and logged as downstream/<task>, e.g. [gsm8k,math500]; needs the eval extra and
    trainer.eval_data_dir. Its time is excluded from tokens/s."""
    eval_data_dir: Optional[str] = None
    """Folder of the local benchmark files that nexus-eval reads (its --data-dir), for trainer.eval_tasks."""
    eval_task_limit: Optional[int] = 100
    """Examples per benchmark scored by trainer.eval_tasks (None: all)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.resume = {"true": "auto", "false": "never"}.get(str(self.resume).lower(), str(self.resume))


@dataclass
class LoggingConfig(Section):
    """Metric sinks."""

    jsonl: bool = True
    """Append metrics to run_dir/metrics.jsonl."""
    progress_bar: bool = True
    """A terminal progress bar."""
    wandb: bool = False
    """Log to Weights & Biases."""
    wandb_project: str = "nexus_pretrain"
    """W&B project."""
    wandb_mode: WandbMode = WandbMode.offline
    """W&B mode: offline (default), online or disabled."""
    tensorboard: bool = False
    """Write TensorBoard event files under run_dir/tb."""
    cosine_every: int = 0
    """Steps between measurements of the mean pairwise cosine of per-domain gradients; 0 never."""


@dataclass
class TrainConfig:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def register_configs() -> None:
    """Register the schemas so Hydra type-checks every composed config."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, node in [
        ("model", ModelConfig),
        ("optim", OptimConfig),
        ("schedule", ScheduleConfig),
        ("data", DataConfig),
        ("backend", BackendConfig),
        ("trainer", TrainerConfig),
        ("logging", LoggingConfig),
    ]:
        cs.store(group=group, name=f"{group}_schema", node=node)
