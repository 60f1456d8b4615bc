"""
The module to name with ``--gym-packages`` when running the RL Zoo's own scripts: importing it calls
:func:`sb3_trpo.zoo.register`, so that the Zoo's ``--algo trpo``, ``npg``, ``trpo_mask``, ``trpo_lstm`` and
``trpo_mask_lstm`` run sb3_trpo's classes (without it, ``--algo trpo`` runs sb3-contrib's TRPO)::

    python -m rl_zoo3.train --algo trpo --env CartPole-v1 --gym-packages sb3_trpo.zoo.plugin -conf sb3_trpo.zoo
    python -m rl_zoo3.enjoy --algo trpo --env CartPole-v1 --gym-packages sb3_trpo.zoo.plugin -f logs

In a Python script, call ``sb3_trpo.zoo.register()`` before ``rl_zoo3.train.train()``.
"""

from sb3_trpo.zoo.registry import register

register()
