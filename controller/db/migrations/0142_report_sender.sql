-- Who sent each report beside the name it declares (controller/reports/senders.py): the
-- network an HTTPS report came from, the From domain of a mailed one. A reporter is
-- established for a domain once reports under its name from one sender arrived on several days
-- (controller/reports/room.py); reports taken before this migration have none ('').
ALTER TABLE reports ADD COLUMN sender text NOT NULL DEFAULT '';
