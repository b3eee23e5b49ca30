"""Snapshots of live instances: capture and restore, dirty tracking, the policy of
when, deploy-time instrumentation, and mid-call snapshots of stackful components."""
