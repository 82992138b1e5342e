-- Which of the receiver's listeners took an arrival (shared/arrivals.py `listener`): '' the
-- address's own port, else the senders' test twin it reached ('plain', 'tls_1_0',
-- 'bad_cert'); the senders' grading reads it (controller/arrivals/grading.py).
ALTER TABLE arrivals ADD COLUMN listener text NOT NULL DEFAULT '';
