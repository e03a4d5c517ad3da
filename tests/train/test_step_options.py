"""viscoin.amp and viscoin.compile: ``auto`` (the default) is bf16 and torch.compile on a CUDA GPU
that supports them, float32 and eager elsewhere without a word (``resolve_speed_options``); the
trainer, its evaluation and its start-up line read the resolved options, the saved config keeps
what was asked. No GPU needed: the device is only read for its type."""

import pytest
import torch
import yaml

import viscoin.train.viscoin as vt
from tests.conftest import DATA, run_cli, save_tiny_models
from viscoin.config import (
    VISCOIN_AMP_SETTINGS,
    Config,
    ViscoinConfig,
    available_presets,
    load_config,
    resume_differences,
)
from viscoin.errors import UserError
from viscoin.train import step
from viscoin.train.step import (
    AMP_MODES,
    SpeedOptions,
    bf16_supported,
    compile_supported,
    resolve_speed_options,
)

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture
def gpu(monkeypatch):
    """What the resolver asks of the machine, answered as given: ``gpu(bf16=..., triton=...)``."""

    def answer(bf16: bool = True, triton: bool = True) -> None:
        monkeypatch.setattr(step, "bf16_supported", lambda: bf16)
        monkeypatch.setattr(step, "compile_supported", lambda: triton)

    answer()
    return answer


def options(device: torch.device, **viscoin: object) -> SpeedOptions:
    return resolve_speed_options(ViscoinConfig(**viscoin), device)


@pytest.mark.parametrize(
    ("device", "bf16", "expected"),
    [
        (CUDA, True, "bf16"),  # a GPU computing bf16 natively
        (CUDA, False, "none"),  # an older GPU (bf16 only emulated)
        (CPU, True, "none"),
    ],
)
def test_auto_amp_is_bf16_exactly_on_a_cuda_gpu_that_has_it(device, bf16, expected, gpu):
    gpu(bf16=bf16)
    assert options(device).amp == expected
    assert options(device, amp="auto").amp == expected


@pytest.mark.parametrize("device", [CUDA, CPU])
@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("amp", AMP_MODES)
def test_an_explicit_amp_is_kept_on_every_device(device, bf16, amp, gpu):
    gpu(bf16=bf16)
    assert options(device, amp=amp).amp == amp  # bf16 on the CPU as well


def test_auto_amp_asks_nothing_of_cuda_off_it(monkeypatch):
    def no_gpu(**kwargs):
        raise AssertionError("asked the CUDA device on the CPU")

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", no_gpu)
    assert options(CPU).amp == "none"


@pytest.mark.parametrize(
    ("device", "triton", "expected"),
    [
        (CUDA, True, "default"),  # compiled in viscoin.compile_mode
        (CUDA, False, "none"),  # no Triton: Inductor could not build the kernels
        (CPU, True, "none"),
    ],
)
def test_auto_compile_is_on_exactly_on_cuda_with_triton(device, triton, expected, gpu):
    gpu(triton=triton)
    assert options(device).compile == expected
    assert options(device, compile="auto").compile == expected


def test_auto_compile_stays_eager_under_torchrun_and_true_still_compiles(gpu):
    v = ViscoinConfig()
    assert resolve_speed_options(v, CUDA, world_size=1).compile == "default"
    assert resolve_speed_options(v, CUDA, world_size=2) == SpeedOptions("bf16", False, "none")
    asked = ViscoinConfig(compile=True)
    assert resolve_speed_options(asked, CUDA, world_size=2).compile == "default"


def test_compile_true_compiles_on_cuda_and_is_ignored_elsewhere(gpu):
    gpu(triton=False)  # asked for: not second-guessed (torch says what is missing)
    assert options(CUDA, compile=True).compile == "default"
    assert options(CPU, compile=True).compile == "none"  # as before 'auto': silently eager


@pytest.mark.parametrize("device", [CUDA, CPU])
def test_compile_false_never_compiles(device, gpu):
    assert options(device, compile=False).compile == "none"


def test_the_other_options_pass_through(gpu):
    got = options(
        CUDA, compile_mode="reduce-overhead", compile_scope="regional", channels_last=True
    )
    assert got == SpeedOptions("bf16", True, "reduce-overhead", "regional")
    assert options(CPU, channels_last=True) == SpeedOptions("none", True, "none", "whole")
    with pytest.raises(UserError, match="viscoin.compile_mode must be one of"):
        options(CUDA, compile_mode="fast")


def test_bf16_counts_native_support_only(monkeypatch):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return not including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert bf16_supported() is True and asked == [False]
    # a torch without the argument: its answer is already native support only
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert bf16_supported() is False


def test_compile_support_is_triton_being_installed(monkeypatch):
    found = {"triton": object(), "other": None}
    monkeypatch.setattr(step.importlib.util, "find_spec", lambda name: found.get(name))
    assert compile_supported() is True
    found["triton"] = None
    assert compile_supported() is False


def test_the_options_describe_themselves():
    assert SpeedOptions().describe() == "fp32 eager"
    assert SpeedOptions("bf16", True).describe() == "bf16 + channels_last eager"
    assert SpeedOptions("bf16", False, "default").describe() == "bf16 + torch.compile (default)"
    assert (
        SpeedOptions("none", True, "reduce-overhead", "regional").describe()
        == "fp32 + channels_last + torch.compile (reduce-overhead, regional)"
    )


# -- the config ------------------------------------------------------------------------------


def test_amp_and_compile_default_to_auto():
    assert (Config().viscoin.amp, Config().viscoin.compile) == ("auto", "auto")
    assert (load_config(None).viscoin.amp, load_config(None).viscoin.compile) == ("auto", "auto")
    assert VISCOIN_AMP_SETTINGS[0] == "auto" and VISCOIN_AMP_SETTINGS[1:] == AMP_MODES
    for preset in set(available_presets()) - {"demo"}:
        v = load_config(preset).viscoin
        assert (v.amp, v.compile) == ("auto", "auto"), preset


def test_the_demo_trains_in_float32_eagerly_everywhere(gpu):
    """Its 2 000 small steps would wait longer for compiling than they take, and its settings
    were measured in float32."""
    v = load_config("demo").viscoin
    assert (v.amp, v.compile) == ("none", False)
    assert resolve_speed_options(v, CUDA) == SpeedOptions()


def test_amp_and_compile_take_their_settings():
    for amp in VISCOIN_AMP_SETTINGS:
        assert load_config(None, [f"viscoin.amp={amp}"]).viscoin.amp == amp
    assert load_config(None, ["viscoin.compile=true"]).viscoin.compile is True
    assert load_config(None, ["viscoin.compile=false"]).viscoin.compile is False
    assert load_config(None, ["viscoin.compile=auto"]).viscoin.compile == "auto"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("viscoin.amp=fp16", "viscoin.amp must be auto, none or bf16, got 'fp16'"),
        ("viscoin.amp=true", "viscoin.amp must be auto, none or bf16, got 'True'"),
        ("viscoin.compile=maybe", "viscoin.compile must be auto, true or false, got 'maybe'"),
        ("viscoin.compile=1", "viscoin.compile must be auto, true or false, got '1'"),
        ("viscoin.compile='true'", "viscoin.compile must be auto, true or false, got 'true'"),
        ("viscoin.compile=[auto]", "viscoin.compile must be of type"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line(override, message):
    with pytest.raises(UserError, match=f"^--set: {message}|^{message}") as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("compile", [True, False, "auto"])
@pytest.mark.parametrize("amp", ["none", "bf16", "auto"])
def test_a_saved_config_loads_its_amp_and_compile_back(amp, compile, tmp_path):
    """config.yaml of runs saved before 'auto' hold a YAML bool for compile; those after, any of
    the three."""
    raw = Config().to_dict()
    raw["viscoin"].update(amp=amp, compile=compile)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert f"  compile: {str(compile).lower()}\n" in path.read_text()
    loaded = load_config(path)
    assert loaded.viscoin.amp == amp
    assert loaded.viscoin.compile == compile and type(loaded.viscoin.compile) is type(compile)
    loaded.save(tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml") == loaded


def test_resuming_an_old_run_may_change_amp_and_compile():
    saved = load_config(None, ["viscoin.amp=none", "viscoin.compile=false"])  # the old defaults
    safe, refused = resume_differences(saved, load_config(None))
    assert safe == {"viscoin.amp": ("none", "auto"), "viscoin.compile": (False, "auto")}
    assert refused == {}


# -- the trainer -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random classifier (it only has to be finite) and a tiny generator."""
    return save_tiny_models(tmp_path_factory.mktemp("models"))


def train_viscoin(models, tmp_path, *sets: str):
    flags = [f"--set={s}" for s in sets]
    return run_cli(
        "train", "viscoin", *DATA, "--classifier", str(models / "f.safetensors"),
        "--generator", str(models / "G.safetensors"), "--set", "viscoin.iterations=2",
        "--set", "viscoin.n_concepts=8", "--set", "viscoin.channels=16",
        "--set", "viscoin.real_batch=4", "--set", "viscoin.fake_batch=4",
        "--set", "viscoin.eval_every=0", "--set", "viscoin.eval_batches=1",
        "--set", "viscoin.lpips=none", "--set", "viscoin.log_every=1",
        "--runs-dir", str(tmp_path), "--name", "v", "--quiet", *flags,
    )  # fmt: skip


@pytest.fixture
def recorded(monkeypatch):
    """The options each StepCompute is built with and the autocast dtype of each evaluation."""
    seen = {"options": [], "autocast": []}
    build, evaluate = vt.StepCompute.__init__, vt.evaluate_ensemble

    def step_compute(self, *args):
        seen["options"].append(args[5])
        build(self, *args)

    def evaluate_ensemble(*args, **kwargs):
        seen["autocast"].append(kwargs["autocast_dtype"])
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(vt.StepCompute, "__init__", step_compute)
    monkeypatch.setattr(vt, "evaluate_ensemble", evaluate_ensemble)
    return seen


def test_the_defaults_on_the_cpu_train_in_float32_eagerly_without_a_word(
    models, tmp_path, recorded, monkeypatch
):
    def no_compile(*args, **kwargs):
        raise AssertionError("torch.compile was called")

    monkeypatch.setattr(torch, "compile", no_compile)
    proc = train_viscoin(models, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert recorded["options"] == [SpeedOptions()]  # fp32, eager
    assert recorded["autocast"] == [None]  # the final evaluation in float32 too
    assert "warning" not in proc.stderr.lower() and "amp" not in proc.stderr
    assert "compile" not in proc.stderr
    assert "1 process(es), step fp32 eager)" in proc.stdout
    run = tmp_path / "v"
    saved = yaml.safe_load((run / "config.yaml").read_text())["viscoin"]
    assert (saved["amp"], saved["compile"]) == ("auto", "auto")  # what was asked
    assert not (run / "compile-cache").exists()
    assert (run / "checkpoints" / "viscoin.safetensors").is_file()


def test_the_trainer_runs_the_resolved_options_not_the_settings(
    models, tmp_path, recorded, monkeypatch
):
    """'auto' resolved as on a GPU: the step, its evaluation and its start-up line follow the
    resolved bf16 and compiled step, and the compiled graphs are cached in the run."""
    asked = []

    def resolve(v, device, world_size):
        asked.append((v.amp, v.compile, device, world_size))
        return SpeedOptions("bf16", False, "default")

    monkeypatch.setattr(vt, "resolve_speed_options", resolve)
    monkeypatch.setattr(torch, "compile", lambda fn, **options: fn)  # nothing to build
    proc = train_viscoin(models, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert asked == [("auto", "auto", CPU, 1)]
    assert recorded["options"] == [SpeedOptions("bf16", False, "default")]
    assert recorded["autocast"] == [torch.bfloat16]
    assert "step bf16 + torch.compile (default): a few minutes of compiling first)" in proc.stdout
    assert (tmp_path / "v" / "compile-cache").is_dir()
