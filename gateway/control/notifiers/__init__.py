"""Alert notifiers, one file each; build them with `notifiers.factory.make_notifier`."""
