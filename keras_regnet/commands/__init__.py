"""Sub-commands of the ``keras-regnet`` CLI; each module has ``add_arguments(parser)`` and ``run(args)``."""
