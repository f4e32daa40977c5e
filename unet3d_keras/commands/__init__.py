"""The command-line programs: each module's ``main(argv)`` is a console command of setup.py.

``scripts/<name>.py`` and the ``unet3d-<name>`` commands both call these ``main`` functions.
"""
