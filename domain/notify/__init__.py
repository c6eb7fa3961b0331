"""Reaching attendees: push (FCM), in-app, email, calendar feeds, reminders, referrals, feedback."""
