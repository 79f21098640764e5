"""Scheduled jobs: delivery and retries, follow-ups, escalations, a daily summary, purging.

`labintake.jobs.scheduler` runs them with APScheduler and a persistent job store;
`labintake.jobs.lease` makes each run happen on one instance only.
"""
