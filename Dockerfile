# GPU image (docs/docker.md): NVIDIA's PyTorch container (CUDA, cuDNN, NCCL and a matching torch), plus this package with
# its GPU, evaluation, tracking and Slurm extras. The base image's torch satisfies our torch>=2.6 requirement,
# so pip keeps it.
FROM nvcr.io/nvidia/pytorch:25.10-py3

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/workspace/.cache/huggingface \
    WANDB_MODE=offline

WORKDIR /workspace/nexus_pretrain
COPY pyproject.toml README.md Makefile ./
COPY nexus_pretrain ./nexus_pretrain
COPY configs ./configs
COPY scripts ./scripts
COPY data_pipelines ./data_pipelines
COPY eval ./eval
COPY docs ./docs
COPY tests ./tests

# flash-attn compiles against the image's torch; MAX_JOBS bounds the build's memory.
RUN MAX_JOBS=8 pip install --no-build-isolation -e ".[gpu,eval,tracking,slurm,dev]"

ENTRYPOINT []
CMD ["nexus-train", "--help"]
