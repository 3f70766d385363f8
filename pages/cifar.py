"""CIFAR-10 lab: SGD, SAM, PSAM and late SAM on a real network.

Training runs in the background (serve/jobs.py): the page stays usable, a fragment polls the jobs and
draws live progress and learning curves, and finished runs are kept by job id for this browser's
session token (in the URL as ?lab=…), so a reload finds them again. On a server one GPU job runs at a
time and the rest are queued, with the position shown. On a CPU, live runs are limited to the tiny
model on the built-in mini subset, with a time estimate before starting. Recorded GPU runs (data/runs/)
show real figures in a lecture without a GPU, marked as recorded.
"""

from __future__ import annotations

import functools
import re
import uuid

import streamlit as st

from app import cache, cifar_view, controls, theme
from app.classroom_view import class_link
from core.cifar import data as cdata
from core.cifar import tasks
from core.cifar.models import MODELS
from core.cifar.profiles import EscapeConfig, ProfileConfig, interpolation_profile
from core.cifar.train import TrainConfig
from core.device import has_gpu
from core.methods import page_methods
from serve.jobs import JobError
from serve.runner import default_runner

HAS_GPU = has_gpu()
LANE = "gpu" if HAS_GPU else "cpu"
# Measured throughputs (images per gradient evaluation per second) for the time estimate:
# tiny CNN on this 2-core CPU ≈ 3,000 img/s (bf16, one busy core); fast net on an H100 ≈ 98,000 img/s at batch
# 500 (data/runs/gpu_throughput.json).
RATE = {("tiny", False): 3_000, ("tiny", True): 150_000, ("fast", False): 150, ("fast", True): 100_000,
        # airbench net: not yet measured here; its author's 3.83 s for 9.9 epochs on an A100 is ~130k img/s
        ("airbench", False): 150, ("airbench", True): 130_000}
CPU_MAX_EPOCHS = 30  # the label-noise lecture scene trains 1,000 images for 30 epochs (≈ 45 s a run)
ESCAPE_EPOCHS = 2                       # epochs of each continuation in the escape experiment
ESCAPE_RHOS = (0.02, 0.05, 0.1, 0.2, 0.5)
# λ_max of the start and of each continuation, on a fixed batch of this many training images: each
# Hessian-vector product costs ~4 gradient evaluations of the batch, so the CPU uses a small one.
ESCAPE_EVAL = 500 if HAS_GPU else 128
ESCAPE_ITERS = 10
TABLE_OPTS = tuple(page_methods())  # the registry's methods for the pages (core.methods, on_pages)
runner = default_runner()


# --- who am I: a session token that survives a reload (in the URL), released when the session ends --
@st.cache_resource(scope="session", on_release=lambda owner: default_runner().cancel_owner(owner),
                   show_spinner=False)
def _session_owner(token: str) -> str:
    return token


def _owner() -> str:
    if "lab" not in st.session_state:
        raw = st.query_params.get("lab", "")
        st.session_state["lab"] = raw if re.fullmatch(r"[0-9a-f]{32}", str(raw)) else uuid.uuid4().hex
    token = st.session_state["lab"]
    st.query_params["lab"] = token
    controls.keep_param("lab")  # in this page's URL only: other pages drop it, so their links do not share it
    return _session_owner(token)


@st.cache_data(max_entries=8, show_spinner=False)
def _check_data(spec: str) -> tuple[str, int, int, str | None]:
    """(source, n_train, n_test, message) for a data choice; a bad path falls back with a message."""
    d, msg = cdata.load_or_fallback(spec)
    return d.source, len(d.y_train), len(d.y_test), msg


def _safe_spec(text: str) -> tuple[str, str | None]:
    """On a shared server, users may name only 'builtin', 'full' or a file under the repo's data/ folder:
    never an arbitrary server path (that would let anyone probe or read the server's files)."""
    if text in ("builtin", "full"):
        return text, None
    root = cdata.REPO / "data"
    try:
        path = (cdata.REPO / text).resolve()
        inside = path.is_relative_to(root.resolve())
    except (OSError, ValueError):
        inside = False
    if not inside:
        return "builtin", (f"data: only 'builtin', 'full' or a path under data/ can be used here, not "
                           f"{text[:60]!r}; using the built-in subset (5,000 train / 1,000 test images) instead")
    return str(path), None


def _estimate_s(cfg: TrainConfig) -> float:
    schedule, _ = cfg.schedule()
    batch = cfg.resolved_batch()
    steps = cfg.epochs * max(1, min(cfg.train_size, 50_000) // batch)
    return schedule.grad_evals(steps) * batch / RATE[(cfg.model, HAS_GPU)] + (3.0 if not HAS_GPU else 1.0)


# Jobs are importable functions with their configs bound (core/cifar/tasks.py): under `make hall` they run in
# the hall's RQ worker, which unpickles them by reference; under `make app` in this process.
def _job(cfg: TrainConfig):
    return functools.partial(tasks.train_task, cfg)


def _escape_job(cfg: TrainConfig, rhos: tuple[float, ...]):
    """Escape on a real net: SGD, then SGD and SAM at each ρ from there; one progress row per stage
    (1 + 1 + len(rhos) of them)."""
    return functools.partial(tasks.escape_task, cfg,
                             EscapeConfig(rhos=rhos, continue_epochs=ESCAPE_EPOCHS, eval_images=ESCAPE_EVAL))


def _is_escape(j) -> bool:
    return j.meta.get("kind") == "escape"


owner = _owner()
st.title("CIFAR-10 lab")
present = theme.is_presentation()
if not present:  # the lecturer says it; the projector's first screen is for the chart
    st.caption("Do SAM's gains hold on a real network, and is PSAM enough? Train SGD, SAM, PSAM and late SAM "
               "side by side, then look at sharpness and the loss between the solutions.")

# --- controls ----------------------------------------------------------------------------------
if present:  # the projector: the main controls in a narrow column beside the live runs and their chart (the chart
    # is the point), the schedules, the seed and the data choice below them
    left, live_area = st.columns([1, 2], gap="large")
    right = st.container()
else:
    left, right = st.columns([1, 1], gap="large")
with left:
    rho = controls.rho_slider(default=0.05, hi=0.5, step=0.01)
    opts = controls.optimizer_multiselect(default=("sgd", "sam", "psam"), allowed=TABLE_OPTS,
                                          label="optimizers (one background run each)")
    if HAS_GPU:
        model = controls.choice("model", "model", MODELS, "airbench")   # the GPU net: airbench94's recipe (issue 15)
        train_size = controls.number_slider("train_size", "training images (class-balanced subset)", lo=500,
                                            hi=50_000, default=10_000, step=500)
        epochs = controls.number_slider("epochs", "epochs", lo=1, hi=50, default=10)
    else:
        model = "tiny"
        has_gpu_records = any(r.get("hardware", {}).get("gpu") for r in cache.recorded_runs(kinds=("table", "escape")))
        no_gpu = ("No GPU on this server: live runs use the tiny CNN on the built-in mini subset (5,000 training "
                  "images). " + ("The recorded GPU runs below show the fast net." if has_gpu_records else
                                 "The recorded runs below were made on a CPU too; none from a GPU ship yet."))
        if present:
            st.caption(no_gpu)
        else:
            st.info(no_gpu, icon=":material/info:")
        train_size = controls.number_slider("train_size", "training images (class-balanced subset)", lo=500,
                                            hi=5_000, default=2_000, step=500)
        epochs = controls.number_slider("epochs", "epochs", lo=1, hi=CPU_MAX_EPOCHS, default=3)
with right:
    sched = controls.schedule_controls(which=("k", "f", "late_f", "p"))
    seed = controls.number_input("seed", "seed", default=0)
    with st.expander("Label noise and regularisation",
                     expanded=any(k in st.query_params for k in ("label_noise", "augment", "smoothing"))):
        label_noise = controls.float_slider("label_noise", "label noise: share of training labels made wrong", 0.0,
                                            0.8, 0.0, step=0.1, fmt="%.1f",
                                            help="Symmetric noise on the training set only (seeded); the test labels "
                                                 "stay clean. SAM's robustness to noisy labels is among its strongest "
                                                 "published results (Foret et al. 2021, Table 4).")
        augment = controls.toggle("augment", "augment (random flips and shifts)", True)
        smoothing = controls.float_slider("smoothing", "label smoothing", 0.0, 0.3, 0.2, step=0.05, fmt="%.2f")
    with st.expander("Data", expanded=controls.parse_text("data", st.query_params.get("data"))[0] != ""):
        spec = controls.text_input("data", "data: 'builtin', 'full' or a file under data/ (ImageFolder "
                                   "dir/tar, cifar-10-batches-py)", "builtin", max_chars=300).strip() or "builtin"
spec, path_msg = _safe_spec(spec)
source, n_tr, n_te, data_msg = _check_data(spec)
data_msg = path_msg or data_msg
if data_msg:
    st.warning(data_msg, icon="⚠️")
if not HAS_GPU and spec != "builtin":
    st.info("No GPU on this server: live runs use the built-in mini subset whatever the data choice.",
            icon=":material/info:")
    spec = "builtin"
    source, n_tr, n_te, _ = _check_data(spec)
st.caption(f"Data: {source} ({n_tr:,} training / {n_te:,} test images).")

base = TrainConfig(data=spec, train_size=int(train_size), model=model, rho=float(rho),
                   k=int(sched["k"]), f=float(sched["f"]), late_f=float(sched["late_f"]), p=float(sched["p"]),
                   epochs=int(epochs), seed=int(seed), sharpness_iters=10 if not HAS_GPU else 20,
                   trace_samples=3 if not HAS_GPU else 10, eval_batch=256 if not HAS_GPU else 500,
                   label_noise=float(label_noise), augment=bool(augment), label_smoothing=float(smoothing))
cfgs = [TrainConfig(**{**base.__dict__, "optimizer": o, "rho": rho * (10 if o == "asam" else 1)}) for o in opts]
estimate = sum(_estimate_s(c) for c in cfgs)
# The entry point of the class experiment (issue 14): each student trains one optimizer briefly on the CPU.
class_link("cifar", rho=float(rho), k=int(sched["k"]), f=float(sched["f"]), late_f=float(sched["late_f"]),
           p=float(sched["p"]))
b1, b2, b3 = (left, left, left) if present else st.columns([1, 1, 2])  # on the projector: one under the other
start = b1.button("Train in the background", type="primary", disabled=not cfgs)
stop = b2.button("Cancel my runs")
b3.caption(f"Estimated time: about {estimate:.0f} s for {len(cfgs)} run(s) on the {'GPU' if HAS_GPU else 'CPU'}"
           + (" (ASAM uses 10 × ρ: its ball scales with |w|)." if "asam" in opts else "."))
if start:
    submitted = 0
    for c in cfgs:
        try:
            runner.submit(owner, _job(c), lane=LANE, label=cifar_view.run_label(c.__dict__), meta=dict(c.__dict__))
            submitted += 1
        except JobError as e:
            st.warning(str(e), icon="⚠️")
            break
    if submitted:
        st.toast(f"Started {submitted} run(s): their progress is under *Live runs* below.",
                 icon=":material/play_arrow:")
if stop:
    n = runner.cancel_owner(owner)
    st.toast(f"Cancelled {n} run(s).")

jobs = runner.jobs(owner)
active = any(j.active for j in jobs)


# --- live progress: a fragment that polls the jobs while any is active ---------------------------
def lane_caption() -> None:
    running, queued = runner.lane_load(LANE)
    st.caption(f"Server {'GPU' if HAS_GPU else 'CPU'} lane: {running} running, {queued} queued (all users).")


@st.fragment(run_every=1.0 if active else None)
def live():
    views = runner.jobs(owner)
    lane_caption()  # inside the polling fragment, so the count follows the runs while they go
    for j in views[-8:]:
        # as submitted, whatever the sliders say now: epochs of a run, stages of an escape experiment
        unit, total = ("stage", j.meta.get("stages")) if _is_escape(j) else ("epoch", j.meta.get("epochs"))
        done = len(j.progress)
        if j.status == "queued":
            st.write(f":material/hourglass_empty: **{j.label}**: queued, position {j.queue_position} "
                     f"in the {j.lane.upper()} queue")
        elif j.status == "running":
            frac = min(1.0, done / total) if total else 0.0
            st.progress(frac, text=f"**{j.label}**: {unit} {done}" + (f" of {total}" if total else ""))
        elif j.status == "done" and j.result and _is_escape(j):
            n, base_status = len(j.result["escape"]["rows"]), j.result["escape"]["base"].get("status")
            if base_status == "diverged":
                st.write(f":material/error: **{j.label}**: the SGD start diverged, so there is nothing to escape "
                         "from; try fewer epochs or another seed")
            else:
                st.write(f":material/check_circle: **{j.label}**: {n} continuation(s) measured"
                         + ("" if j.result["complete"] else " (stopped early)") + "; see *Escape from an SGD solution*")
        elif j.status == "done" and j.result:
            r = j.result["result"]
            icon = {"done": ":material/check_circle:", "cancelled": ":material/stop_circle:",
                    "diverged": ":material/error:"}.get(r["status"], "")
            st.write(f"{icon} **{j.label}**: {r['message']} — test accuracy {100 * r['test_acc']:.1f}%")
            for m in r.get("messages", []):
                st.caption(m)
        else:
            st.write(f":material/stop_circle: **{j.label}**: {j.status}" + (f" ({j.error})" if j.error else ""))
    curves = [(_cfg_of(j), list(j.progress)) for j in views if j.progress and not _is_escape(j)]
    if curves:
        st.plotly_chart(cifar_view.learning_curves(curves), key="main_chart", config=theme.PLOTLY_CONFIG)
        st.caption("Test accuracy per epoch (solid, left axis) and the training loss (dotted, right axis: the epoch's "
                   "mean minibatch loss, with the chosen label smoothing and augmentation, on the training labels: "
                   "noisy ones if label noise is on). SAM steps cost two gradient evaluations, so compare curves "
                   "against the cost in the table.")
    else:
        recorded_curves()
    if active and not any(v.active for v in views):
        st.rerun()  # the last run finished: redraw the whole page (table, profiles)


def _cfg_of(j) -> dict:
    """The config a job ran (its result's) or was submitted with."""
    return j.result["result"]["config"] if j.result else j.meta


def recorded_curves():
    """Before any live run: the learning curves of the first recorded run (seed 0), marked as recorded."""
    rec = next(iter(cache.recorded_runs()), None)
    runs = [(r["config"], r["history"]) for r in (rec["results"]["runs"] if rec else []) if r.get("seed") == 0]
    st.plotly_chart(cifar_view.learning_curves(runs), key="main_chart", config=theme.PLOTLY_CONFIG)
    if rec:
        hw = rec.get("hardware", {})
        st.caption(f"Recorded, not live: learning curves of `{rec['file']}` ({hw.get('gpu') or 'CPU'}, seed 0). "
                   "Test accuracy solid (left axis), training loss dotted "
                   "(right axis: the epoch's mean minibatch loss, "
                   "with label smoothing 0.2 on augmented images). Your own runs replace them.")
    else:
        st.caption("Learning curves appear here when a run finishes its first epoch.")


with live_area if present else st.container():
    st.subheader("Live runs")
    if jobs:
        live()
    else:
        lane_caption()
        st.caption("No runs yet in this session. Press *Train in the background*; the recorded runs below need none.")
        recorded_curves()

# --- comparison table and loss profile -----------------------------------------------------------
finished = [j for j in jobs if j.status == "done" and j.result and not _is_escape(j)
            and j.result["result"]["status"] == "done"]
if finished:
    st.subheader("Comparison")
    df = cifar_view.comparison_table([j.result["result"] for j in finished])
    st.dataframe(df, hide_index=True)
    st.caption("λ_max: top Hessian eigenvalue (power iteration on Hessian-vector products), Tr(H): Hutchinson, both on "
               "a fixed batch of training images. Cost vs SAM counts gradient evaluations.")
    controls.download_data("runs", [j.result["result"] for j in finished], config=base.__dict__,
                           file_stem="cifar_runs", csv=df)

    sgd = [j for j in finished if j.result["result"]["config"]["optimizer"] == "sgd"]
    sam = [j for j in finished if j.result["result"]["config"]["optimizer"] in ("sam", "psam", "late_sam", "asam")]
    st.subheader("Loss between the solutions")
    if sgd and sam:
        pick = st.selectbox("compare SGD with", [j.label for j in sam], key="profile_with")
        other = next(j for j in sam if j.label == pick)
        key = (sgd[-1].id, other.id)
        if st.button("Compute the loss profile", key="profile_go"):
            tcfg = TrainConfig(**{**sgd[-1].result["result"]["config"], "classes": ()})
            with st.spinner("Evaluating 13 points, BatchNorm statistics recomputed at each…"):
                prof = interpolation_profile(tcfg, sgd[-1].result["state"], other.result["state"],
                                             ProfileConfig(points=13, n_eval=1000, bn_images=1000),
                                             label="SGD → "
                                             f"{theme.label(other.result['result']['config']['optimizer'])}")
            st.session_state.setdefault("cifar_profiles", {})[key] = prof.to_dict()
        prof = st.session_state.get("cifar_profiles", {}).get(key)
        if prof:
            st.plotly_chart(cifar_view.profile_figure([prof]), key="profile_chart", config=theme.PLOTLY_CONFIG)
            st.caption("The loss along the straight line from the SGD solution (t = 0) to the other one (t = 1), "
                       "extended to t ∈ [−1, 2]; BatchNorm statistics are recomputed at every point. A flatter side "
                       "rises more slowly (He et al. 2019, the asymmetric valley on a real net).")
            controls.download_data("profile", prof, config=base.__dict__, file_stem="cifar_profile", key="prof_dl")
    else:
        st.caption("Finish an SGD run and a SAM-type run with the same settings to compare their solutions.")

# --- escape from an SGD solution, live ------------------------------------------------------------
st.subheader("Escape from an SGD solution")
st.caption(f"Claim 1 on a real net: train with SGD (the settings above), then continue {ESCAPE_EPOCHS} epochs from "
           "that solution w₀ with SGD and with SAM at several ρ, on the same minibatches. SAM should travel "
           "further from w₀ and end flatter (lower λ_max), more so the larger ρ.")
e1, e2 = st.columns([2, 1])
with e1:
    esc_rhos = controls.multi_choice("esc_rhos", "ρ of the SAM continuations", ESCAPE_RHOS, (0.05, 0.1, 0.2))
esc_cfg = TrainConfig(**{**base.__dict__, "optimizer": "sgd", "sharpness_iters": ESCAPE_ITERS})
# training: the SGD start, then one continuation per optimizer; sharpness: λ_max of the start and of each
# continuation, ESCAPE_ITERS power steps of ~4 gradient evaluations each (twice that when a shift is needed)
esc_estimate = (_estimate_s(esc_cfg)
                + sum(_estimate_s(TrainConfig(**{**esc_cfg.__dict__, "optimizer": o, "epochs": ESCAPE_EPOCHS}))
                      for o in ["sgd"] + ["sam"] * len(esc_rhos))
                + (2 + len(esc_rhos)) * ESCAPE_ITERS * 4 * ESCAPE_EVAL / RATE[(model, HAS_GPU)])
with e2:
    esc_go = st.button("Run the escape experiment", disabled=not esc_rhos, key="esc_go")
    st.caption(f"About {esc_estimate:.0f} s on the {'GPU' if HAS_GPU else 'CPU'}, in the background.")
if esc_go:
    rhos = tuple(sorted(float(r) for r in esc_rhos))
    try:
        runner.submit(owner, _escape_job(esc_cfg, rhos), lane=LANE,
                      label=f"escape from SGD ({esc_cfg.train_size} images × {esc_cfg.epochs} epochs), "
                            f"SAM ρ {', '.join(f'{r:g}' for r in rhos)}",
                      meta={"kind": "escape", "stages": 2 + len(rhos), **esc_cfg.__dict__})
        st.rerun()  # the live view above starts polling
    except JobError as e:
        st.warning(str(e), icon="⚠️")
esc_done = [j for j in jobs if _is_escape(j) and j.status == "done" and j.result and j.result["escape"]["rows"]]
if esc_done:
    esc = esc_done[-1].result["escape"]
    st.plotly_chart(cifar_view.escape_figure(esc), key="escape_chart", config=theme.PLOTLY_CONFIG)
    st.dataframe(cifar_view.escape_table(esc), hide_index=True)
    controls.download_data("escape experiment", esc, config=esc_done[-1].meta, file_stem="cifar_escape",
                           key="esc_dl")

# --- recorded runs -------------------------------------------------------------------------------
st.subheader("Recorded runs")
recorded = cache.recorded_runs()
if not recorded:
    st.caption("No recorded runs are shipped yet.")
for i, rec in enumerate(recorded):
    hw = rec.get("hardware", {})
    tag = "GPU" if hw.get("gpu") else "CPU"
    with theme.fold(f":material/history: recorded ({tag}): {rec.get('file', '')}", expanded=(i == 0)):
        st.caption(cifar_view.recorded_caption(rec))
        theme.table(cifar_view.recorded_table(rec))
        verdict = cifar_view.recorded_verdict(rec)
        if verdict:
            st.markdown(verdict)
            st.caption("Each difference is the first named minus the second. λ_max: the largest eigenvalue of the "
                       "loss's Hessian at the end, by power iteration on a fixed batch of training images; lower is "
                       "flatter. Clear of the seed noise: Welch's t beyond its two-sided 5% critical value "
                       "(core.stats.welch_difference).")
        st.plotly_chart(cifar_view.recorded_figure(rec), key=f"recorded_chart_{i}", config=theme.PLOTLY_CONFIG)
        st.caption("Each marker is one optimizer: mean test accuracy against mean wall time over the seeds, bars "
                   "± one standard deviation. Further left is cheaper, higher is better.")
        if rec["results"].get("profiles"):
            st.plotly_chart(cifar_view.profile_figure(rec["results"]["profiles"]), key=f"recorded_profile_{i}",
                            config=theme.PLOTLY_CONFIG)
            st.caption("Recorded loss profiles (seed 0), BatchNorm statistics recomputed at every point. Left: along "
                       "the line from the SGD solution (t = 0) to the SAM solution (t = 1), extended to [−1, 2]; a "
                       "bump between them means two basins. Right: from each solution along a filter-normalised "
                       "random direction (Li et al. 2018); the flatter solution rises more slowly. The loss is plain "
                       "cross-entropy on fixed images without augmentation or label smoothing, hence lower than the "
                       "learning curves' training loss.")
        controls.download_data("recorded run", rec, config=rec.get("config"), file_stem=rec.get("file", "run")[:-5],
                               key=f"rec_dl_{i}")
for rec in cache.recorded_runs(kinds=("escape",)):
    tag = "GPU" if rec.get("hardware", {}).get("gpu") else "CPU"
    with theme.fold(f":material/history: recorded ({tag}) escape from an SGD solution: {rec.get('file', '')}"):
        st.caption(cifar_view.recorded_caption(rec))
        st.plotly_chart(cifar_view.escape_figure(rec["results"]), key=f"recorded_escape_{rec.get('file', '')}",
                        config=theme.PLOTLY_CONFIG)
        theme.table(cifar_view.escape_table(rec["results"]))
        st.caption("From an SGD-trained net w₀, training continues with SGD and with SAM at several ρ on the same "
                   "minibatches. SAM should travel further, and lower λ_max more, the larger ρ "
                   "(claim 1 on a real net). "
                   "Distance: ‖w − w₀‖ over all parameters. Loss jump: the training loss after the continuation minus "
                   "at w₀ (plain cross-entropy on a fixed set of training images); positive means it climbed out of "
                   "the SGD minimum. λ_max drop: λ_max at w₀ minus after; negative means it rose.")
throughput = cache.recorded_runs(kinds=("run",))
if throughput:
    tag = "GPU" if any(r.get("hardware", {}).get("gpu") for r in throughput) else "CPU"
    with theme.fold(f":material/history: recorded ({tag}) training throughput"):
        theme.table(cifar_view.throughput_table(throughput))
        devices = sorted({r.get("hardware", {}).get("gpu") or "CPU" for r in throughput})
        st.caption(f"On {' and '.join(devices)}. The shipped runs: SGD on the fast net over 50,000 images, 3 epochs "
                   "each, bf16 and channels_last. At batch 500 (the tables' setting) a step is short enough that "
                   "launching its kernels from Python, not the GPU, sets the pace; larger batches fill the GPU but "
                   "reach a lower accuracy in the same 3 epochs at the same learning rate. 'All epochs' includes "
                   "epoch 1, which pays for torch.compile's compilation in the compiled run; read the compiled run "
                   "after epoch 1. "
                   "BENCHMARKS.md has the details and the commands.")
