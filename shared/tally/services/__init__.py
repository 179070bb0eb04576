"""Use cases. They talk to storage only through the ports in `tally.services.ports`."""
