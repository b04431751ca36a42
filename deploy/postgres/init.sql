-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d).
-- POSTGRES_USER=driftlight and POSTGRES_DB=driftlight make the role and the prediction-log
-- database; this adds the MLflow backend store's database, owned by the same role.
SELECT 'CREATE DATABASE driftlight OWNER driftlight'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'driftlight')\gexec

SELECT 'CREATE DATABASE mlflow OWNER driftlight'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\gexec
