-- Mail-authentication readiness (issue 67): its facts by job id, as every side check's.
SELECT side_check_table('readiness');
