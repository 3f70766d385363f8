"""pages/home.py and app/main.py: the story page, the navigation and the sidebar.

Claims:
1. app/main.py runs Home by default, without exceptions, with the main chart, and navigates to every
   page of pages/ (url paths as in the conventions).
2. Home links each of the thesis' four claims to the page that shows it, names the counter-evidence
   (Zhou et al. 2025, LookSAM) and the compute device.
3. Hostile URL parameters on Home (unknown there) each get a notice, not a traceback.
4. The presentation toggle is bound to ?present=1.
5. Every lecture scene carries only parameters its page accepts: opening it gives no notice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.presets import scenes
from tests.pagetest import run_page

REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "app" / "main.py")


def _main(**params) -> AppTest:
    return run_page("app/main.py", **params)


def test_home_is_default_with_claims_links_and_device():
    at = _main()
    assert at.title[0].value.startswith("SAM Lab")
    links = [(p.proto.page, p.proto.label) for p in at.get("page_link")]
    targets = {label: page for page, label in links if label.startswith("See it")}
    assert targets == {"See it: Escape lab": "escape", "See it: Asymmetric valley lab": "valley",  # claims 1, 2
                       "See it: ρ sweep in the Escape lab": "escape", "See it: PSAM scheduler": "psam"}  # 3, 4
    text = " ".join(m.value for m in at.markdown)
    assert "Zhou et al., ICLR 2025" in text and "LookSAM" in text
    assert any("computes on" in i.value for i in at.info)
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-main_chart"))
    assert json.loads(chart.proto.spec)["data"]


@pytest.mark.parametrize("page", ["sam_step", "playground", "psam"])
def test_navigation_reaches_pages(page):
    at = _main()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.proto.id.endswith("-main_chart") for c in [*at.get("plotly_chart"), *at.get("bidi_component")])


def test_hostile_url_on_home_gives_notices():
    at = _main(rho="nan", particles="1e12", no_such_key="1")
    warnings = " | ".join(w.value for w in at.warning)
    for key in ("rho", "particles", "no_such_key"):
        assert key in warnings, warnings


def test_presentation_toggle_from_url():
    at = _main(present="1")
    assert at.toggle(key="present").value is True
    css = " ".join(m.value for m in at.markdown if "<style>" in m.value)
    assert "stSidebar" in css and "display: none" in css
    at = _main()
    assert at.toggle(key="present").value is False


@pytest.mark.parametrize("name", [n for n, s in scenes().items() if s.page in ("sam_step", "playground", "psam")
                                  or n == "valley_schedules"])
def test_scene_params_give_no_notice(name):
    scene = scenes()[name]
    at = AppTest.from_file(str(REPO / "pages" / f"{scene.page}.py"), default_timeout=180)
    for k, v in scene.params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [w.value for w in at.warning if "Diverged" not in w.value], [w.value for w in at.warning]
    if "rho" in scene.params:  # the slider's value, or the ρ the browser's ρ control shows first (issue 18)
        assert at.session_state["rho"] == pytest.approx(float(scene.params["rho"]))


def test_recorded_runs_listed():
    """Every recorded comparison table in data/runs/ appears on Home (count read independently)."""
    recorded = []
    for path in (REPO / "data" / "runs").glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except ValueError:
            continue
        if rec.get("kind") == "table" and rec.get("recorded"):
            recorded.append(path.name)
    at = _main()
    labels = [e.label for e in at.expander]
    if not recorded:
        assert not any(lab.startswith("Recorded CIFAR-10") for lab in labels)
    else:
        assert f"Recorded CIFAR-10 runs in this project ({len(recorded)})" in labels


def test_moving_between_pages_starts_each_from_its_own_defaults():
    """Pages share widget keys (rho, lr, sigma, particles, steps) with different ranges. Moving from one page to
    the next in the navigation must give the next page its defaults: none of the previous page's values, and no
    slider reset to its minimum (which would then be written into the URL and spread with a copied link). A
    page at its defaults writes nothing into the URL, so the URL must stay empty along the whole tour."""
    at = _main()
    tour = ["escape", "valley", "sam_step", "playground", "escape", "psam", "valley", "cifar", "playground"]
    for page in tour:
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        written = {k: v for k, v in at.query_params.items() if not (page == "cifar" and k == "lab")}  # its job id
        assert written == {}, (page, written)
        assert not at.warning or page == "cifar", (page, [w.value for w in at.warning])
    assert at.select_slider(key="lr").value != 1e-4  # the playground's η is its default, not the slider's minimum
    token = at.session_state["lab"]  # the CIFAR lab's job token stays with the session: its runs are found again
    at.switch_page("../pages/cifar.py").run()
    assert at.query_params["lab"] == [token] or at.query_params["lab"] == token


def test_scenes_from_presets_keep_every_setting_their_page_reads():
    """A scene made from an engine preset must carry each of the preset's settings that its page reads (η, σ,
    steps, particles, noise, landscape, start …): one that a page's range rejected would silently drop out,
    and the scene would no longer show its claim (σ = 6 of 'Exploring many wells' once fell off a σ ≤ 5
    slider). The one documented exception: the PSAM page's 50-particle minimum."""
    from app.presets import PAGE_PARAMS
    from core.toy.presets import PRESETS

    all_scenes = scenes()
    for name, preset in PRESETS.items():
        scene, cfg = all_scenes[name], preset.config
        wanted = {"lr": cfg.lr, "sigma": cfg.sigma, "steps": cfg.steps, "particles": cfg.particles, "seed": cfg.seed,
                  "noise": cfg.noise, "landscape": cfg.landscape, "k": cfg.k, "f": cfg.f}
        if cfg.start is not None:
            wanted |= dict(zip(("x", "y"), cfg.start))
        for key, value in wanted.items():
            if key not in PAGE_PARAMS.get(scene.page, {}) or (scene.page == "psam" and key == "particles"
                                                               and value < 50):
                continue
            assert key in scene.params, (name, key, value, scene.params)
            shown = scene.params[key]
            assert shown == value if isinstance(value, str) else float(shown) == pytest.approx(value), (name, key)


def test_noise_free_bounce_scene_shows_sam_bouncing():
    """'Noise-free SAM bounces across the minimum' opens the playground without noise, from w = 0.5 on the
    valley: SGD's loss decays to the minimum's, SAM's stays up (it ends on its 2-cycle, never at the minimum)."""
    scene = scenes()["sam_bounce"]
    at = AppTest.from_file(str(REPO / "pages" / f"{scene.page}.py"), default_timeout=180)
    for k, v in scene.params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception and not at.warning, ([e.value for e in at.exception], [w.value for w in at.warning])
    assert at.selectbox(key="noise").value == "none" and at.slider(key="x").value == pytest.approx(0.5)
    curves = {d["name"]: d["y"] for d in json.loads(next(c for c in at.get("plotly_chart")
                                                         if c.proto.id.endswith("-loss_chart")).proto.spec)["data"]}
    assert curves["SGD"][-1] < 1e-6 and curves["SAM"][-1] > 1e-4, (curves["SGD"][-1], curves["SAM"][-1])


def test_a_loaded_scene_states_its_claim_and_the_menu_stays_reachable_on_the_projector():
    """Choosing a scene opens its page with ?preset=<name> and shows the scene's claim above the page (a shared
    link shows it too); leaving for another page drops it. In presentation mode, where the sidebar is hidden,
    the scene menu is at the top of the page."""
    at = _main()
    at.selectbox(key="scene").set_value("many_wells").run()
    assert not at.exception, [e.value for e in at.exception]
    claim = scenes()["many_wells"].claim
    assert any("Scene: Exploring many wells" in i.value and claim in i.value
               for i in at.info), [i.value for i in at.info]
    assert at.query_params["preset"] in ("many_wells", ["many_wells"])
    assert at.slider(key="sigma").value == pytest.approx(6.0)
    at.switch_page("../pages/psam.py").run()
    assert "preset" not in at.query_params and not any("Scene:" in i.value for i in at.info)
    shown = _main(present="1")
    assert shown.selectbox(key="scene") is not None and not shown.sidebar.selectbox


def test_scenes_after_other_pages_keep_the_session_and_their_own_settings():
    """Sequences a lecturer takes: (1) CIFAR, then a scene, then back to CIFAR: the job token stays, so the
    background runs are still found and can be cancelled. (2) The playground on its default landscape, then the
    'Noise-free SAM bounces' scene: its start w = 0.5 from the URL wins over the page's reset to the new
    landscape's default start (w = 0, where noise-free SAM never moves)."""
    at = _main()
    at.switch_page("../pages/cifar.py").run()
    token = at.session_state["lab"]
    at.selectbox(key="scene").set_value("sam_step_basic").run()
    at.switch_page("../pages/cifar.py").run()
    assert at.session_state["lab"] == token

    at = _main()
    at.switch_page("../pages/playground.py").run()
    at.selectbox(key="scene").set_value("sam_bounce").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="landscape").value == "valley_1d" and at.slider(key="x").value == pytest.approx(0.5)


def test_the_scene_banner_goes_when_a_setting_leaves_the_scene():
    """The claim describes the scene's settings: after ρ moves away from them, the banner and ?preset= go (a copied
    link must not promise a claim its settings no longer show)."""
    at = _main()
    at.selectbox(key="scene").set_value("zhu_breaks").run()
    assert any("Scene:" in i.value for i in at.info)
    at.session_state["rho"] = 0.05  # a release of the browser's ρ control (issue 18)
    at.run()
    assert "preset" not in at.query_params
    at.run()
    assert not any("Scene:" in i.value for i in at.info)


def test_the_scene_banner_goes_when_rho_moves_inside_a_fragment():
    """On the escape and valley pages ρ reruns only a fragment, which does not reach the banner above the page:
    moving ρ away from the scene must still take the banner and ?preset= down."""
    at = _main()
    at.selectbox(key="scene").set_value("escape").run()
    assert any("Scene:" in i.value for i in at.info)
    at.session_state["rho"] = 0.1  # a release of the browser's ρ control (issue 18; e2e: test_pages.py)
    at.run()
    assert "preset" not in at.query_params
    assert not any("Scene:" in i.value for i in at.info), [i.value for i in at.info]


@pytest.mark.parametrize("name", [n for n, s in scenes().items() if s.page != "cifar"])
def test_every_scene_opens_with_its_banner(name):
    """Loading a scene from the menu shows its claim: none of its settings is changed by the page on arrival
    (a clamped or snapped value would take the banner down at once)."""
    at = _main()
    at.selectbox(key="scene").set_value(name).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"Scene: {scenes()[name].title}." in i.value for i in at.info), (name, [i.value for i in at.info])


def test_calibration_shows_this_labs_h100_table_beside_the_brief():
    """Home's real-network table: the project's own recorded H100 run (10k × 30), read here independently from
    data/runs/, beside the theory brief's calibration; the brief alone when no such record ships."""
    from app.cifar_view import BRIEF, calibration_table

    lab, lab_file = None, ""
    for path in sorted((REPO / "data" / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        c = rec.get("config", {})
        if rec.get("kind") == "table" and (rec.get("hardware") or {}).get("gpu") and c.get("train_size") == 10_000 \
                and c.get("epochs") == 30 and lab is None:
            lab, lab_file = rec, path.name
    brief_only = calibration_table(None)
    assert list(brief_only) == ["optimizer", "test acc. %, brief", "λ_max", "time vs SAM"]
    assert brief_only["test acc. %, brief"] == [b[0] for b in BRIEF.values()]
    at = _main()
    shown = at.table[0].value
    if lab is None:
        assert list(shown.columns) == list(brief_only)
        return
    sam = next(r for r in lab["results"]["rows"] if r["optimizer"] == "sam")
    assert list(shown["test acc. %, this lab"])[1] == (f"{100 * sam['test_acc_mean']:.2f} ± "
                                                      f"{100 * sam['test_acc_std']:.2f}")
    assert list(shown["time vs SAM, lab / brief"])[1] == "1.00× / 1.00×"
    assert any(f"recorded in `{lab_file}`" in c.value for c in at.caption)


def test_calibration_note_judges_the_differences_against_the_seeds():
    """Home's caption says only what the seeds carry (Welch, as the CIFAR page's verdicts): a gap within the noise
    is called so, and PSAM's flatness is named by which of SGD's and SAM's λ_max the seeds can tell it from."""
    from app.cifar_view import calibration_note

    def runs(o, accs, lams):
        return [{"optimizer": o, "status": "done", "test_acc": a, "lambda_max": m} for a, m in zip(accs, lams)]
    def lab(psam_lams):
        return {"file": "t.json", "results": {"runs": runs("sgd", [0.79, 0.792, 0.794], [100, 101, 102])
                                               + runs("sam", [0.80, 0.802, 0.804], [80, 81, 82])
                                               + runs("psam", [0.79, 0.80, 0.81], psam_lams)}}
    note = calibration_note(lab([99, 100, 101]))
    assert "SAM − PSAM is +0.20 points here (within the seed noise)" in note
    assert "PSAM ends as sharp as SGD, as in the brief" in note
    assert "PSAM ends as flat as SAM" in calibration_note(lab([80, 81, 82]))
    assert "the seeds cannot tell it from either" in calibration_note(lab([60, 90, 120]))
    assert "theory brief" in calibration_note(None)
    with pytest.raises(KeyError):   # a record without PSAM: the page catches this and shows the brief alone
        calibration_note({"results": {"runs": runs("sgd", [0.79, 0.8], [98, 99]) + runs("sam", [0.8, 0.81], [83, 84])}})


def test_presentation_mode_keeps_the_scene_and_its_claim():
    """The projector is where a scene's claim matters most: loading a scene with presentation mode on, or turning
    it on with a scene on screen, keeps the banner and ?preset= (the toggle is the app's, not a scene setting)."""
    claim = scenes()["sam_bounce"].claim
    at = _main(present="1")
    at.selectbox(key="scene").set_value("sam_bounce").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(claim in i.value for i in at.info), [i.value for i in at.info]
    assert at.query_params["preset"] in ("sam_bounce", ["sam_bounce"])
    at.run()   # a rerun (the page's own) must not drop it either
    assert any(claim in i.value for i in at.info) and "preset" in at.query_params
    normal = _main()
    normal.selectbox(key="scene").set_value("many_wells").run()
    normal.toggle(key="present").set_value(True).run()
    assert any(scenes()["many_wells"].claim in i.value for i in normal.info), [i.value for i in normal.info]
    assert "preset" in normal.query_params
