-- The DKIM selectors a monitor lists for the readiness side check (`dkimSelectors`, issue 67):
-- read beside those a round trip's message is signed with and the common ones. Null: none.
ALTER TABLE monitors ADD COLUMN dkim_selectors text[];
