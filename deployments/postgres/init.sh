#!/usr/bin/env bash
# First start of the compose `postgres` service only (docker-entrypoint-initdb.d): one role and
# one database per consumer. Passwords come from the container environment, which compose fills
# from .env; nothing secret is written here.
set -euo pipefail

: "${POSTGRES_PREFECT_PASSWORD:?set POSTGRES_PREFECT_PASSWORD in .env}"
: "${POSTGRES_MLFLOW_PASSWORD:?set POSTGRES_MLFLOW_PASSWORD in .env}"
: "${POSTGRES_PREDICTION_LOG_PASSWORD:?set POSTGRES_PREDICTION_LOG_PASSWORD in .env}"

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

create_database prefect "$POSTGRES_PREFECT_PASSWORD" prefect
create_database mlflow "$POSTGRES_MLFLOW_PASSWORD" mlflow
create_database prediction_log "$POSTGRES_PREDICTION_LOG_PASSWORD" prediction_log
