"""Service level targets: business calendars, per-priority policies, due times (pure functions)."""
