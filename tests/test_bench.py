"""nexus-bench on CPU: the grid of models x optimizers runs, and results are reported as promised."""

import json

import pytest
import torch

from nexus_pretrain.bench import child_argv, main
from nexus_pretrain.bench.profile import categorize, device_time_by_category
from nexus_pretrain.model.llama import INDUCTOR_OPTIONS


def test_grid_of_ours_and_hf_under_adamw_and_nexus(tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "bench.json"
    results = main(["--preset", "tiny", "--vocab", "256", "--seq-len", "32", "--micro-batch", "2", "--global-batch",
                    "6", "--hf-micro-batch", "3", "--inner-steps", "1", "--steps", "1", "--warmup", "1", "--device", "cpu",
                    "--models", "ours,hf", "--optimizers", "adamw,nexus", "--in-process",
                    "--activation-checkpointing", "2", "--json-out", str(out)])
    assert list(results) == ["ours", "hf"] and all(list(r) == ["adamw", "nexus"] for r in results.values())
    for model, (micro, accum) in {"ours": (2, 3), "hf": (3, 2)}.items():
        for r in results[model].values():
            assert (r["micro_batch"], r["accum"]) == (micro, accum)
            assert r["tokens_per_s"] == pytest.approx(6 * 32 / r["step_s"])
    table = capsys.readouterr().out
    assert "accum=3" in table and "tok/s vs HF" in table and "residual_dtype=bfloat16" in table
    record = json.loads(out.read_text())
    assert record["results"]["hf"]["nexus"]["accum"] == 2
    assert record["environment"]["versions"]["torch"] == torch.__version__ and record["environment"]["device"] == "cpu"


def test_throughput_levers_are_selectable(capsys):
    results = main(["--preset", "tiny", "--vocab", "256", "--seq-len", "32", "--micro-batch", "2", "--accum", "2",
                    "--steps", "1", "--warmup", "1", "--device", "cpu", "--optimizers", "nexus,nexus_eager_step",
                    "--residual-dtype", "embedding", "--memory-census", "blocks", "--in-process"])
    assert list(results["ours"]) == ["nexus", "nexus_eager_step"]
    assert "nexus_eager_step" in capsys.readouterr().out


def test_inductor_defaults_reach_our_regions_only(monkeypatch, capsys):
    import nexus_pretrain.bench as bench

    seen = []
    real = bench.build_model
    monkeypatch.setattr(bench, "build_model",
                        lambda *a, inductor_options=None: seen.append(inductor_options) or real(*a, inductor_options))
    argv = ["--preset", "tiny", "--vocab", "256", "--seq-len", "32", "--micro-batch", "2", "--accum", "1",
            "--steps", "1", "--warmup", "1", "--device", "cpu", "--optimizers", "adamw", "--in-process"]
    main(argv)
    main(argv + ["--inductor-defaults"])
    main(argv + ["--inductor-option", "coordinate_descent_tuning=true", "--inductor-option=triton.tile_reductions=0"])
    main(argv + ["--inductor-defaults", "--inductor-option", "combo_kernels=True"])
    assert seen == [None, {},  # None: model.llama.INDUCTOR_OPTIONS
                    {**INDUCTOR_OPTIONS, "coordinate_descent_tuning": True, "triton.tile_reductions": 0},
                    {"combo_kernels": True}]
    out = capsys.readouterr().out
    assert "inductor_defaults=True" in out and "inductor_options={'combo_kernels': True}" in out


@pytest.mark.parametrize("item", ["no_such_option=1", "triton.no_such_option=1", "coordinate_descent_tuning"])
def test_unknown_or_malformed_inductor_options_are_refused(item, capsys):
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--inductor-option", item])
    assert item in capsys.readouterr().err


@pytest.mark.parametrize("extra, calls", [
    (["--accum", "4"], 2 + 4),  # default K = accum: an inner step per micro-batch (warmup: two micro-batches)
    (["--accum", "8", "--inner-steps", "4"], 1 + 4),  # nexus-train's default K: inner batches of two micro-batches
    (["--accum", "4", "--inner-steps", "2"], 1 + 2),
    (["--accum", "4", "--inner-steps", "1"], 1 + 1),
])
def test_inner_steps_come_at_inner_batch_ends_as_in_the_trainer(monkeypatch, extra, calls):
    import nexus_pretrain.bench as bench

    seen = []
    real = bench.build_optimizer

    def counting(*a, **k):
        optimizer = real(*a, **k)
        micro_step = optimizer.micro_step
        optimizer.micro_step = lambda: seen.append(1) or micro_step()
        return optimizer

    monkeypatch.setattr(bench, "build_optimizer", counting)
    main(["--preset", "tiny", "--vocab", "256", "--seq-len", "16", "--micro-batch", "1", "--steps", "1",
          "--warmup", "1", "--device", "cpu", "--optimizers", "nexus", "--in-process", *extra])
    assert len(seen) == calls


@pytest.mark.parametrize("extra, passes", [(["--accum", "8", "--inner-steps", "2"], 4), (["--accum", "4"], 1)])
def test_warmup_teaches_nexus_the_length_of_an_inner_batch(monkeypatch, extra, passes):
    """So the timed step takes each gradient's norm once per inner batch from its first one."""
    import nexus_pretrain.bench as bench

    optimizers = []
    real = bench.build_optimizer
    monkeypatch.setattr(bench, "build_optimizer", lambda *a, **k: optimizers.append(real(*a, **k)) or optimizers[-1])
    monkeypatch.setattr(bench.gc, "collect", lambda: optimizers[-1]._backward_norm.passes == passes or pytest.fail(
        f"after warm-up the norm hooks expect {optimizers[-1]._backward_norm.passes} passes, not {passes}"))
    main(["--preset", "tiny", "--vocab", "256", "--seq-len", "16", "--micro-batch", "1", "--steps", "1",
          "--warmup", "1", "--device", "cpu", "--optimizers", "nexus", "--in-process", *extra])


def test_inner_steps_that_do_not_divide_the_micro_batches_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--accum", "6", "--inner-steps", "4"])
    assert "--inner-steps 4 does not divide the 6 micro-batches per step" in capsys.readouterr().err


def test_child_processes_get_one_model_and_optimizer():
    argv = ["--preset", "llama_1b", "--models", "ours,hf", "--optimizers=adamw,nexus", "--json-out", "x.json", "--compile"]
    assert child_argv(argv, "hf", "nexus") == ["--preset", "llama_1b", "--compile", "--models", "hf",
                                               "--optimizers", "nexus", "--json"]


def test_bad_batch_arguments_are_refused():
    with pytest.raises(SystemExit):
        main(["--micro-batch", "3", "--global-batch", "8"])
    with pytest.raises(SystemExit):
        main(["--micro-batch", "2", "--global-batch", "8", "--hf-micro-batch", "3"])
    with pytest.raises(SystemExit):  # without a global batch the two models' tokens per step would differ
        main(["--micro-batch", "2", "--accum", "4", "--hf-micro-batch", "1"])
    with pytest.raises(SystemExit, match="--optimizers"):
        main(["--optimizers", "sgd", "--device", "cpu"])


def test_profile_categories():
    assert categorize("sm90_xmma_gemm_bf16bf16_bf16f32") == "matmul"
    assert categorize("nvjet_tst_128x256_64x4_2x1_v_bz_TNT") == "matmul"
    assert categorize("cudnn_generated_fort_native_sdpa_sm90_flash_fprop") == "attention"
    assert categorize("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0") == "fused elementwise (compiled)"
    assert categorize("triton_red_fused_abs_max_3") == "fp8 scaling and casts (compiled)"
    assert categorize("triton_poi_fused__to_copy_clamp_mul_reciprocal_7") == "fp8 scaling and casts (compiled)"
    assert categorize("void at::native::elementwise_kernel<128, 2, direct_copy_kernel_cuda>") == "copy/cast"
    assert categorize("triton_poi_fused_mul_silu_3") == "fused elementwise (compiled)"
    assert categorize("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor>") == "optimizer"
    assert device_time_by_category({"triton_poi_fused_mul_silu_3": 1.0, "gemm_a": 3.0, "gemm_b": 2.0}) == {
        "matmul": 5.0, "fused elementwise (compiled)": 1.0}


def test_an_in_process_run_that_leaves_memory_allocated_is_reported(monkeypatch, caplog):
    """Later runs' peaks would include what an earlier run leaked (as Nexus's hooks once leaked its model)."""
    import nexus_pretrain.bench as bench

    readings = iter([10.0, 10.0, 10.0, 10.75])  # GiB allocated before and after each of two runs
    monkeypatch.setattr(bench, "allocated_gib", lambda device: next(readings))
    results = main(["--preset", "tiny", "--vocab", "256", "--seq-len", "32", "--micro-batch", "2", "--accum", "1",
                    "--steps", "1", "--warmup", "1", "--device", "cpu", "--optimizers", "adamw,nexus", "--in-process"])
    assert "left_allocated_gib" not in results["ours"]["adamw"]
    assert results["ours"]["nexus"]["left_allocated_gib"] == pytest.approx(0.75)
    assert "ours/nexus left 0.75 GiB allocated" in caplog.text
