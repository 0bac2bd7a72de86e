"""Alert notifiers, one file each; build them with `gateway.alerts.make_notifier`."""
