"""What a person reads: the console tables and files of ``analyze``, ``split`` and
``balance`` (:mod:`.analysis`, :mod:`.balance`) and the plotting helpers every figure
uses (:mod:`.plotting`). The experiment report is :mod:`imgbalance.experiments.report`.
"""
