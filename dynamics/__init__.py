"""
Tokens as interacting particles (shared/spec/particles.md): clustering on the sphere
(dynamics/sphere.py) and accelerated attention as inertial dynamics (dynamics/inertial.py).
Each experiment is a command: python -m dynamics.exp_sphere, python -m dynamics.exp_inertial.
"""
