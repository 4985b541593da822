"""Notifications of a finished run: its results, the email and the signed webhook.

Plain functions (no Airflow context): ``results`` works out the outcome and the
results of a run, ``email`` builds and sends the message through the smtp
provider's SmtpHook, ``webhook`` builds, signs and delivers the JSON payload.
The ``notify`` task (``edgeloop.operators.notify.NotifyOperator``) orchestrates them.
"""
