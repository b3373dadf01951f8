-- DELETE /admin/dead-letters/{id}.
DELETE FROM dead_letters WHERE id = $1;
