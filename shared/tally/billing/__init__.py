"""The pure domain: no AWS SDK, no environment, no wall clock."""
