"""Lecture scenes for the sidebar: a named view per claim, as (page, URL parameters).

A scene is just a link: loading it switches to its page with its query parameters, so a scene and
a copied URL are the same thing. Scenes come from two places:

* `core.presets.PRESETS` (the engine's named configs, shared with the CLI and tests), turned into
  URL parameters by `scene_from_preset`, and
* `APP_SCENES` below, for views that are not a single simulation (the SAM-step diagram, the
  schedule timeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGES = ("home", "sam_step", "playground", "escape", "valley", "psam", "cifar")


@dataclass(frozen=True)
class Scene:
    name: str
    title: str
    page: str  # url path of the page (one of PAGES)
    params: dict = field(default_factory=dict, hash=False)  # URL query parameters (strings)
    claim: str = ""


APP_SCENES: tuple[Scene, ...] = (
    Scene("sam_step_basic", "How one SAM step works", "sam_step", {"rho": "0.3", "lr": "0.1"},
          "SAM takes the gradient at the worst nearby point w+ε, not at w."),
    Scene("sam_step_big_rho", "A SAM step with a large ρ", "sam_step", {"rho": "0.5", "lr": "0.1"},
          "With a large ρ the SAM step can point away from the SGD step."),
    Scene("playground_sgd_vs_sam", "SGD vs SAM in the double well", "playground",
          {"opts": "sgd,sam", "rho": "0.1"},
          "SAM leaves the sharp minimum that SGD settles in."),
    Scene("playground_all", "All optimizers side by side", "playground",
          {"opts": "sgd,sam,asam,psam,late_sam", "rho": "0.1"},
          "PSAM follows SAM at a fraction of the cost."),
    Scene("psam_equal_budget", "PSAM at equal budget", "psam", {"k": "2", "f": "0.6", "rho": "0.1"},
          "PSAM (k=2, f=0.6) costs 65% of SAM."),
)


def _page_for(preset) -> str:
    page = getattr(preset, "page", None)
    if page in PAGES:
        return page
    name = str(getattr(preset, "name", "")).lower()
    for p in PAGES:
        if p in name:
            return p
    return "playground"


def scene_from_preset(name: str, preset) -> Scene:
    """Turn an engine preset (an object with a `config: SimConfig`, or a SimConfig itself) into URL
    parameters for its page. Only fields the pages read from the URL are written."""
    cfg = getattr(preset, "config", preset)
    params: dict[str, str] = {}
    rhos = getattr(cfg, "rhos", None)
    if rhos:
        params["rho"] = f"{max(rhos):g}"
    for key in ("lr", "sigma", "steps", "particles", "seed", "k", "f", "p", "late_f"):
        if hasattr(cfg, key):
            value = getattr(cfg, key)
            params[key] = f"{value:g}" if isinstance(value, float) else str(value)
    if getattr(cfg, "landscape", None):
        params["landscape"] = cfg.landscape
    if getattr(cfg, "optimizer", None):
        params["opts"] = cfg.optimizer if cfg.optimizer == "sgd" else f"sgd,{cfg.optimizer}"
    params.update(getattr(preset, "params", None) or {})
    title = getattr(preset, "title", None) or name.replace("_", " ")
    claim = getattr(preset, "claim", None) or getattr(preset, "description", "") or ""
    return Scene(name, str(title), _page_for(preset), params, str(claim))


def scenes() -> dict[str, Scene]:
    """Every scene by name: the engine's presets first, then the app's own."""
    out: dict[str, Scene] = {}
    try:
        from core.presets import PRESETS
    except ImportError:  # the engine's presets are not there yet
        PRESETS = {}
    for name, preset in dict(PRESETS).items():
        try:
            out[name] = scene_from_preset(name, preset)
        except Exception:  # a preset we cannot turn into a URL is skipped, never a crash
            continue
    for s in APP_SCENES:
        out.setdefault(s.name, s)
    return out
