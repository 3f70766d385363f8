"""The toy simulator: particles on 1-D and 2-D loss landscapes, with exact theory beside them.

    formula.py     the safe parser for a user's landscape formula (never eval)
    landscapes.py  the toy losses, their minima, saddles, basins and curvatures
    noise.py       gradient noise: isotropic, Hessian-shaped, minibatch
    simulate.py    many particles at once, SGD/SAM/ASAM under any schedule (SimConfig → SimResult)
    theory.py      Kramers, closed forms and exact grid Markov chains
    measure.py     survival, escape statistics, stationary means, sweeps on simulation results
    presets.py     named lecture configs, shared by the CLI, the tests and the app

It shares the SAM step (core/sam.py), the schedules (core/schedules.py), the limits and the statistics
(core/stats.py) with the CIFAR trainer in core/cifar/.
"""
