"""Faithful local stand-ins for the provider services (FCM, APNs, Web Push, Twilio, Slack, SMTP).

They check what the real services check (auth, signatures, schema) and can answer each of their
errors. The tests start them on loopback, and `tidings dev` uses them as a local sandbox.
"""
