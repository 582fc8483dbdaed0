"""The public programme: a worker process that mixes, composes and encodes a sitting once."""
