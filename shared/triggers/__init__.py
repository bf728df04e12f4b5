"""Event and cron triggers: models, pattern matching, input mapping and the safety gate (pure)."""
