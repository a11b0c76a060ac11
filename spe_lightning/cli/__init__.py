"""The command line: LightningCLI (:mod:`.lightning_cli`), its parser (:mod:`.parser`), the checks made
before a run (:mod:`.checks`), ``--config`` resolution (:mod:`.config_files`), and the exit policy every
command shares (:mod:`.exit_policy`)."""
