"""The index: the fold of the audit log, generations, and the snapshot readers open."""
