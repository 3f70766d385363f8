"""Named lecture scenes: one SimConfig per claim, shared by the CLI, the tests and the app.

`PRESETS[name]` is a `Preset(title, page, config, claim)` (a named tuple, so it unpacks as the
4-tuple too). Each scene is small enough to recompute in well under 100 ms on the CPU; tests that
need more statistical power reuse the same physics with more particles (`config.replace(...)`).

How the numbers were chosen:
- ESCAPE: theory.md §3's double well, made hotter so escapes take hundreds of steps instead of
  ~40k: η = 0.05, σ = 2.5 give T = ησ²/2 = 0.156, ΔL/T ≈ 3 and Kramers' τ ≈ 510 steps. The exact
  mean from the grid chain (theory.double_well_escape_steps) is 589, and the simulated SGD mean agrees
  with it within its standard error (tests/test_claims.py): Kramers is 14% low at ΔL/T ≈ 3.
  ρ = 0 in a SAM run is plain SGD (ε = 0), so SGD is the first column of the same vectorised run.
- VALLEY: theory.md §4's checked example, a_L = 10, a_R = 1, η = 0.05, σ = 1.
- ZHU_BREAKS: Zhu et al.'s toy with real minibatch noise (B = 10). At the paper's η = 0.005 the
  minibatch noise is too weak for any escape. η = 0.009 puts the sharp minimum (λ_max = 200) at
  ηλ = 1.8, where SAM's 2-cycle of amplitude ηλρ/(2 − ηλ) = 9ρ (theory.md §2) reaches the ridge
  (0.26 away) for ρ ≈ 0.03. Success lives in a window: at ρ = 0.05 about 90% reach the flat minimum;
  below ~0.03 the particles keep bouncing on the sharp walls, a larger ρ traps them on the ridge
  ("hallucinated minimizers"), and SGD (ρ = 0) never leaves.
- SAM_BOUNCE: noise-free SAM on a quadratic settles on a 2-cycle of amplitude ηλρ/(2 − ηλ).
"""

from __future__ import annotations

from typing import NamedTuple

from core.toy.simulate import SimConfig


class Preset(NamedTuple):
    title: str
    page: str  # the app page that shows it
    config: SimConfig
    claim: str  # one line, shown with the scene


ESCAPE = Preset(
    "SAM leaves the sharp minimum sooner", "escape",
    SimConfig(landscape="double_well_2d", optimizer="sam", rhos=(0.0, 0.05, 0.1, 0.15, 0.2),
              lr=0.05, noise="isotropic", sigma=2.5, particles=400, steps=300, seed=0),
    "Starting in the sharp well, more particles have escaped by step 300 the larger ρ is (ρ = 0 is SGD).",
)

VALLEY = Preset(
    "SAM drifts to the flat side of an asymmetric valley", "valley",
    SimConfig(landscape="valley_1d", landscape_params=(("a_left", 10.0), ("a_right", 1.0)),
              optimizer="sam", rhos=(0.0, 0.05, 0.1, 0.2), lr=0.05, noise="isotropic", sigma=1.0,
              particles=500, steps=1000, burn_in=200, seed=0),
    "The mean position moves towards the flat side, and further the larger ρ is.",
)

ZHU_BREAKS = Preset(
    "Where more ρ stops helping (Zhu et al. toy)", "escape",
    SimConfig(landscape="zhu", optimizer="sam", rhos=(0.0, 0.03, 0.05, 0.1, 0.2), lr=0.009,
              noise="minibatch", batch_size=10, particles=100, steps=500, seed=0, record_points=25),
    "A ρ in the right window carries SAM to the flat minimum; a larger ρ traps it on the ridge between the basins.",
)

PLAYGROUND = Preset(
    "SGD vs SAM in the double well", "playground",
    SimConfig(landscape="double_well_2d", optimizer="sam", rhos=(0.0, 0.1), lr=0.05, noise="isotropic",
              sigma=2.5, particles=30, steps=300, seed=0, keep_paths=30),
    "Watch single particles: SAM's leave the sharp well sooner than SGD's (ρ = 0).",
)

PSAM = Preset(
    "PSAM: SAM on every 2nd step of the first 60%", "psam",
    SimConfig(landscape="double_well_2d", optimizer="psam", k=2, f=0.6, rhos=(0.0, 0.1, 0.2),
              lr=0.05, noise="isotropic", sigma=2.5, particles=400, steps=300, seed=0),
    "PSAM (k = 2, f = 0.6) costs 65% of SAM's gradient evaluations.",
)

SAM_BOUNCE = Preset(
    "Noise-free SAM bounces across the minimum", "playground",
    SimConfig(landscape="valley_1d", landscape_params=(("a_left", 10.0), ("a_right", 10.0)),
              optimizer="sam", rhos=(0.05, 0.1, 0.2), lr=0.05, noise="none", particles=1, steps=200,
              start=(0.5,), seed=0, dtype="float64"),
    "Without noise SGD settles in the minimum but SAM never does: its loss stays above the minimum's, as it keeps "
    "cycling around it (on a quadratic of curvature λ, a 2-cycle of amplitude ηλρ/(2 − ηλ)).",
)

MANY_WELLS = Preset(
    "Exploring many wells", "playground",
    SimConfig(landscape="many_wells", optimizer="sam", rhos=(0.0, 0.05, 0.1), lr=0.01, noise="isotropic",
              sigma=6.0, particles=30, steps=300, seed=0),
    "Noise carries particles from well to well; SAM leaves the starting sharp well more readily.",
)

PRESETS: dict[str, Preset] = {
    "escape": ESCAPE,
    "valley": VALLEY,
    "zhu_breaks": ZHU_BREAKS,
    "playground": PLAYGROUND,
    "psam": PSAM,
    "sam_bounce": SAM_BOUNCE,
    "many_wells": MANY_WELLS,
}
