#!/usr/bin/env bash
# First start of the compose `postgres` service only (docker-entrypoint-initdb.d): one role and
# one database per consumer. Passwords come from the container environment, which compose fills
# from .env; nothing secret is written here.
set -euo pipefail

: "${PREFECT_DB_PASSWORD:?set PREFECT_DB_PASSWORD in .env}"
: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in .env}"
: "${PREDICTION_LOG_DB_PASSWORD:?set PREDICTION_LOG_DB_PASSWORD in .env}"

create_database() {
    local role="$1" password="$2" database="$3"
    # psql variables (:'name' quotes a literal, :"name" an identifier): no shell quoting of secrets.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v role="$role" -v password="$password" -v database="$database" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL
}

create_database prefect "$PREFECT_DB_PASSWORD" prefect
create_database mlflow "$MLFLOW_DB_PASSWORD" mlflow
create_database prediction_log "$PREDICTION_LOG_DB_PASSWORD" prediction_log
