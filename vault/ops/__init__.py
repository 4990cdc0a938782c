"""The operations: modules of functions that take the bottom handle (``vault.handle.Handle``)
and do one thing each — create/upgrade (``create``), write-back (``write``: add, evidence,
status, the embedder choice), ``build``, ``rollback`` (and ``vault index status``), ``gc``,
``verify``, the embedder's fit/use/status (``embedder``), ``embed`` and the ARC import
(``arc_import``). They import the handle and the floors below it, never ``vault.vault``
(the facade over them) nor the evaluation study (see ARCHITECTURE.md)."""
