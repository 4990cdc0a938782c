"""The on-disk store: content-addressed objects, atomic files, the lock, append-only logs."""
