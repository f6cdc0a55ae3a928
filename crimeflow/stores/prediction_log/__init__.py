"""The durable prediction log, in parts: `table`, `engine`, `writer`, `reads`; `log` joins them.

Every name callers use is importable from here; the guarantee is described in `log`.
"""

from crimeflow.stores.prediction_log.ids import PredictionIds, new_prediction_id, prediction_ids
from crimeflow.stores.prediction_log.log import (
    PredictionLog,
    export_predictions,
    read_predictions,
)
from crimeflow.stores.prediction_log.reads import FeedbackOutcome, empty_log_frame, parse_utc
from crimeflow.stores.prediction_log.table import (
    INPUT_COLUMNS,
    INSERT_COLUMNS,
    LOG_COLUMNS,
    META_COLUMNS,
    PREDICTIONS,
    TABLE_NAME,
    PredictionBatch,
    PredictionRecord,
    record_to_row,
)
from crimeflow.stores.prediction_log.writer import (
    LogStats,
    PredictionLogClosedError,
    PredictionLogError,
    PredictionLogUnavailableError,
    PredictionLogWriteError,
    WriterHooks,
)

__all__ = [
    "INPUT_COLUMNS",
    "INSERT_COLUMNS",
    "LOG_COLUMNS",
    "META_COLUMNS",
    "PREDICTIONS",
    "TABLE_NAME",
    "FeedbackOutcome",
    "LogStats",
    "PredictionBatch",
    "PredictionIds",
    "PredictionLog",
    "PredictionLogClosedError",
    "PredictionLogError",
    "PredictionLogUnavailableError",
    "PredictionLogWriteError",
    "PredictionRecord",
    "WriterHooks",
    "empty_log_frame",
    "export_predictions",
    "new_prediction_id",
    "parse_utc",
    "prediction_ids",
    "read_predictions",
    "record_to_row",
]
