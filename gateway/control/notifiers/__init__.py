"""Alert notifiers, one file each; build them with `gateway.control.alerts.make_notifier`."""
