"""HTTP endpoints: predictions, feedback, health/readiness/model info, metrics and admin reload.

Handlers are thin: request bodies are decoded by msgspec (strictly, with errors naming the row
and field), resources come from the app state through Litestar dependencies, and the work lives
in api.schemas (wire types, 400s), crimeflow.contract.incident (the codec), api.model_service
(hot swap, micro-batching) and crimeflow.stores.serving (scoring). OpenAPI examples: api.examples.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import msgspec
from litestar import Controller, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.dto import AbstractDTO
from litestar.dto.data_structures import DTOFieldDefinition
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Body, Parameter
from litestar.typing import FieldDefinition

from api.auth import SCOPE_OPT, bearer, requires
from api.examples import (
    ERROR_RESPONSES,
    FEEDBACK_EXAMPLES,
    INCIDENT_EXAMPLES,
    INCIDENT_LIST_EXAMPLES,
)
from api.model_service import MicroBatcher, ModelHolder
from api.observability import (
    LOG_NOT_WRITABLE,
    NO_MODEL,
    PROMETHEUS_CONTENT_TYPE,
    ApiMetrics,
    current_request_id,
)
from api.schemas import (
    BatchPredictionOut,
    ContributionOut,
    ErrorBody,
    ExplainedPredictionOut,
    Feedback,
    FeedbackOut,
    Health,
    Incident,
    ModelInfo,
    PredictionOut,
    Readiness,
    ReloadOut,
    body_error,
    canonical_batch,
    canonicalize_one,
    decode_batch_fast,
    decode_error,
)
from crimeflow.contract.incident import CanonicalIncident
from crimeflow.contract.links import Links
from crimeflow.contract.settings import Settings
from crimeflow.domain.explain import Explainer, Explanation, UnsupportedModelError
from crimeflow.stores.prediction_log import (
    PredictionBatch,
    PredictionLog,
    PredictionRecord,
    prediction_ids,
)
from crimeflow.stores.serving import ServingModel, explain_columns, explain_rows, score_columns

API_KEY_HEADER = "X-API-Key"
API_KEY_SCHEME = "ApiKeyHeader"

T = TypeVar("T")

# --- strict msgspec bodies -------------------------------------------------------------------

_JSON_SCHEMA_KEYS = {
    "type": "type",
    "title": "title",
    "description": "description",
    "default": "default",
    "examples": "examples",
    "pattern": "pattern",
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
    "required": "required",
    "enum": "enum",
}


def openapi_schema(json_schema: dict[str, Any], definitions: dict[str, Any]) -> Schema:
    """A Litestar OpenAPI Schema from msgspec's JSON schema (references inlined)."""
    if "$ref" in json_schema:
        return openapi_schema(definitions[json_schema["$ref"].rsplit("/", 1)[-1]], definitions)
    kwargs: dict[str, Any] = {}
    for key, name in _JSON_SCHEMA_KEYS.items():
        if key in json_schema:
            kwargs[name] = json_schema[key]
    if "type" in kwargs:
        kwargs["type"] = OpenAPIType(kwargs["type"])
    if "anyOf" in json_schema:
        kwargs["any_of"] = [openapi_schema(s, definitions) for s in json_schema["anyOf"]]
    if "items" in json_schema:
        kwargs["items"] = openapi_schema(json_schema["items"], definitions)
    if "properties" in json_schema:
        kwargs["properties"] = {
            k: openapi_schema(v, definitions) for k, v in json_schema["properties"].items()
        }
    return Schema(**kwargs)


class StrictJsonBody(AbstractDTO[T], Generic[T]):
    """Decode a JSON body straight into a msgspec type, strictly, with field-naming errors.

    Litestar's own path decodes to Python objects and then converts them leniently, which
    loses the row index of a bad batch row and the per-branch constraints of union fields in
    the OpenAPI schema. Subclasses set `body_type`; the schema comes from msgspec itself.
    """

    body_type: ClassVar[Any]
    batch: ClassVar[bool] = False
    subject: ClassVar[str] = "incident"  # what the error detail calls the body
    _decoder: ClassVar[msgspec.json.Decoder[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "body_type" in cls.__dict__:
            cls._decoder = msgspec.json.Decoder(cls.body_type)

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        """No transfer model: the body type is decoded as it is."""
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        """Nothing is nested from the DTO's point of view."""
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        """No DTO backend is needed."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Schema:
        """The request body schema, from msgspec's JSON schema of `body_type`."""
        (schema,), components = msgspec.json.schema_components([cls.body_type])
        result = openapi_schema(schema, components)
        kwarg = field_definition.kwarg_definition
        examples = getattr(kwarg, "examples", None)
        if examples:
            result.examples = [e.value for e in examples]
        description = getattr(kwarg, "description", None)
        if description:
            result.description = description
        return result

    def decode_bytes(self, value: bytes) -> Any:
        """The decoded body; InvalidInputError (400) names the row and field on failure."""
        try:
            return self._decoder.decode(value)
        except msgspec.MsgspecError as error:
            raise decode_error(error, batch=self.batch, subject=self.subject) from None
        except UnicodeDecodeError:
            # msgspec validates UTF-8 lazily, inside strings, and raises this instead.
            raise body_error("a JSON string is not valid UTF-8") from None
        except RecursionError:
            # Nesting deeper than msgspec's limit, even inside an ignored field.
            raise body_error("the JSON is nested too deeply") from None

    def decode_builtins(self, value: Any) -> Any:
        """Bodies only ever arrive as bytes here."""
        raise NotImplementedError("StrictJsonBody decodes raw JSON bytes only")


class IncidentBody(StrictJsonBody[Incident]):
    """One incident."""

    body_type = Incident


class IncidentListBody(StrictJsonBody[Incident]):
    """A non-empty JSON array of incidents."""

    body_type = Annotated[list[Incident], msgspec.Meta(min_length=1)]
    batch = True

    def decode_bytes(self, value: bytes) -> Any:
        """The strict decoding, with each distinct text's regex check done once (same answer)."""
        rows = decode_batch_fast(value)
        return rows if rows is not None else super().decode_bytes(value)


class FeedbackBody(StrictJsonBody[Feedback]):
    """A feedback object."""

    body_type = Feedback
    subject = "feedback"


# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers use, opened in the lifespan and injected as one dependency.

    One dependency rather than one per resource: Litestar resolves several dependencies of a
    handler concurrently, spawning a task for each, which costs more than the handler itself.
    """

    settings: Settings
    holder: ModelHolder
    batcher: MicroBatcher
    prediction_log: PredictionLog
    metrics: ApiMetrics
    # One /predict/batch scores at a time; the others wait instead of all competing for 2 cores.
    batch_slots: asyncio.Semaphore


def provide_services(state: State) -> Services:
    """The services the lifespan opened."""
    return state.services


DEPENDENCIES = {"services": Provide(provide_services, sync_to_thread=False)}


# --- predictions ----------------------------------------------------------------------------

# An explained row costs several times a scored one (TreeSHAP over every leaf of the ensemble):
# a batch asking for explanations is capped well below the plain batch limit.
EXPLAIN_BATCH_MAX_ROWS = 1_000
ExplainFlag = Annotated[
    bool,
    Parameter(
        description=(
            "Add the top feature contributions (exact Shapley values of the model's score) "
            "under `contributions`"
        )
    ),
]
ExplainTop = Annotated[
    int, Parameter(ge=1, le=40, description="How many contributions (largest first) to return")
]


def explainer_or_501(model: ServingModel) -> Explainer:
    """The model's explainer, or 501 naming why this model cannot be explained."""
    try:
        return model.explainer()
    except UnsupportedModelError as error:
        raise HTTPException(status_code=501, detail=str(error)) from None


def explained(
    out: PredictionOut, explanation: Explanation, explainer: Explainer
) -> ExplainedPredictionOut:
    """`out` with its explanation attached."""
    return ExplainedPredictionOut(
        **msgspec.structs.asdict(out),
        contributions=[
            ContributionOut(feature=c.feature, value=c.value, contribution=c.contribution)
            for c in explanation.contributions
        ],
        base_value=explanation.base_value,
        raw_score=explanation.raw_score,
        contribution_scale=explainer.scale,
        explanation_method=explainer.method,
    )


def _record(
    model: ServingModel,
    incident: CanonicalIncident,
    probability: float,
    served_at: datetime,
    request_id: str | None,
) -> tuple[PredictionRecord, PredictionOut]:
    """The log record and the response of one prediction."""
    prediction_id = prediction_ids()  # time-ordered: the log's index grows at its right edge
    label = probability >= model.threshold
    record = PredictionRecord(
        prediction_id=prediction_id,
        served_at=served_at,
        model_name=model.name,
        model_version=model.version,
        request_id=request_id,
        probability=probability,
        label=label,
        incident=incident,
    )
    out = PredictionOut(
        prediction_id=prediction_id,
        arrest_probability=probability,
        arrest=label,
        model_name=model.name,
        model_version=model.version,
        served_at=served_at,
    )
    return record, out


def score_batch(
    model: ServingModel,
    incidents: list[Incident],
    request_id: str | None,
    explain_top: int | None = None,
) -> tuple[PredictionBatch, list[PredictionOut]]:
    """Validate, score and describe a batch with one model (blocking: runs in a worker thread).

    Everything per row happens here, off the event loop, column by column: the validated
    columns become the model's frame and the log's rows without a record object per row.
    With `explain_top`, every row also gets its largest `explain_top` contributions.
    """
    columns = canonical_batch(incidents)
    probabilities = score_columns(model, columns).tolist()
    served_at = datetime.now(UTC)
    threshold = model.threshold
    labels = [probability >= threshold for probability in probabilities]
    ids = prediction_ids.many(len(probabilities))  # increasing, like single predictions' ids
    batch = PredictionBatch(
        incidents=columns,
        prediction_ids=ids,
        served_at=served_at,
        model_name=model.name,
        model_version=model.version,
        request_id=request_id,
        probabilities=probabilities,
        labels=labels,
    )
    name, version = model.name, model.version
    outs = [
        PredictionOut(
            prediction_id=prediction_id,
            arrest_probability=probability,
            arrest=label,
            model_name=name,
            model_version=version,
            served_at=served_at,
        )
        for prediction_id, probability, label in zip(ids, probabilities, labels, strict=True)
    ]
    if explain_top is not None:
        explainer = explainer_or_501(model)
        explanations = explain_columns(model, columns, explain_top)
        outs = [
            explained(out, explanation, explainer)
            for out, explanation in zip(outs, explanations, strict=True)
        ]
    return batch, outs


class PredictionController(Controller):
    """POST /predict, /predict/batch and /feedback."""

    tags: ClassVar[list[str]] = ["predictions"]  # type: ignore[misc]

    @post(
        "/predict",
        **requires("predict"),
        dto=IncidentBody,
        return_dto=None,
        status_code=200,
        summary="Predict whether one incident ends in an arrest",
        responses=ERROR_RESPONSES,
    )
    async def predict(
        self,
        data: Annotated[
            Incident,
            Body(
                description="One raw incident by SODA field name (strings or JSON numbers).",
                examples=INCIDENT_EXAMPLES,
            ),
        ],
        services: Services,
        explain: ExplainFlag = False,
        top: ExplainTop = 5,
    ) -> PredictionOut | ExplainedPredictionOut:
        """Score one incident (micro-batched with concurrent requests) and log the prediction.

        `?explain=true` adds the exact contributions of the readable features (501 when the
        served model has no exact method).
        """
        incident = canonicalize_one(data)
        served = services.holder.require()  # fail fast with the reason, before queueing
        if explain:
            explainer_or_501(served)
        model, probability = await services.batcher.predict(incident)
        explanation = None
        if explain:  # the model that scored the row explains it (a reload may have swapped)
            explainer = explainer_or_501(model)
            (explanation,) = await asyncio.to_thread(explain_rows, model, [incident], top)
        record, out = _record(model, incident, probability, datetime.now(UTC), current_request_id())
        await services.prediction_log.append([record])
        services.metrics.count_predictions([probability], int(out.arrest))
        return out if explanation is None else explained(out, explanation, explainer)

    @post(
        "/predict/batch",
        **requires("predict"),
        dto=IncidentListBody,
        return_dto=None,
        status_code=200,
        summary="Predict a list of incidents, in order, with one model",
        responses={
            **ERROR_RESPONSES,
            413: ResponseSpec(ErrorBody, description="More rows than the configured maximum"),
        },
    )
    async def predict_batch(
        self,
        data: Annotated[
            list[Incident],
            Body(
                description=(
                    "A JSON array of raw incidents (at most CRIMEFLOW_PREDICT_BATCH_MAX_ROWS, "
                    "default 10,000). One invalid row rejects the whole request."
                ),
                examples=INCIDENT_LIST_EXAMPLES,
            ),
        ],
        services: Services,
        explain: ExplainFlag = False,
        top: ExplainTop = 5,
    ) -> BatchPredictionOut:
        """Score every row with one model snapshot (off the event loop) and log them all.

        `?explain=true` adds each row's contributions, for at most 1,000 rows (413 beyond).
        """
        limit = services.settings.api.predict_batch_max_rows
        if len(data) > limit:
            raise ClientException(
                status_code=413, detail=f"a batch holds at most {limit:,} rows, got {len(data):,}"
            )
        if explain and len(data) > EXPLAIN_BATCH_MAX_ROWS:
            raise ClientException(
                status_code=413,
                detail=(
                    f"a batch with explain=true holds at most {EXPLAIN_BATCH_MAX_ROWS:,} rows, "
                    f"got {len(data):,}"
                ),
            )
        model = services.holder.require()  # one snapshot for the whole batch
        explain_top = top if explain else None
        if explain:
            explainer_or_501(model)
        async with services.batch_slots:
            batch, outs = await asyncio.to_thread(
                score_batch, model, data, current_request_id(), explain_top
            )
        await services.prediction_log.append_batch(batch)
        services.metrics.count_predictions(batch.probabilities, sum(batch.labels))
        return BatchPredictionOut(predictions=outs)

    @post(
        "/feedback",
        **requires("feedback"),
        dto=FeedbackBody,
        return_dto=None,
        status_code=200,
        summary="Store the observed outcome next to an earlier prediction",
        responses={
            400: ERROR_RESPONSES[400],
            404: ResponseSpec(ErrorBody, description="No prediction has this id"),
            503: ResponseSpec(ErrorBody, description="The prediction log is down"),
        },
    )
    async def feedback(
        self,
        data: Annotated[
            Feedback,
            Body(examples=FEEDBACK_EXAMPLES),
        ],
        services: Services,
    ) -> FeedbackOut:
        """Record whether the incident ended in an arrest; 404 for an unknown prediction id.

        The latest outcome wins; every one is kept in the log's feedback history, and the answer
        says whether this one replaced an earlier outcome.
        """
        outcome = await services.prediction_log.add_feedback(
            data.prediction_id, data.arrest, current_request_id()
        )
        if outcome is None:
            raise NotFoundException(detail=f"no prediction has id {data.prediction_id!r}")
        return FeedbackOut(
            prediction_id=data.prediction_id,
            arrest=data.arrest,
            replaced=outcome.replaced,
            previous_arrest=outcome.previous_arrest,
            received_at=outcome.received_at,
        )


# --- operations -----------------------------------------------------------------------------


async def check_readiness(services: Services) -> Readiness:
    """Whether this worker can serve: a model loaded, the log writable; sets crimeflow_ready."""
    holder = services.holder
    model = holder.current
    writable = await services.prediction_log.ping()
    reasons, codes = [], []
    if model is None:
        reasons.append(holder.unavailable_reason())
        codes.append(NO_MODEL)
    if not writable:
        reasons.append("the prediction log is not writable")
        codes.append(LOG_NOT_WRITABLE)
    services.metrics.set_ready(codes)
    # Serving an older model while a newer champion fails to load is ready (every replica
    # would fail the same load: 503 would take the service down), but says so in `detail`.
    return Readiness(
        ready=not reasons,
        model_loaded=model is not None,
        model_version=model.version if model else None,
        prediction_log_writable=writable,
        detail="; ".join(reasons) or holder.status_detail(),
    )


class OperationsController(Controller):
    """Liveness, readiness, the served model and Prometheus metrics."""

    tags: ClassVar[list[str]] = ["operations"]  # type: ignore[misc]

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> Health:
        """Always 200 while the process runs."""
        return Health()

    @get(
        "/ready",
        summary="Readiness: a model is loaded and the prediction log is writable",
        responses={503: ResponseSpec(Readiness, description="Not ready (see `detail`)")},
    )
    async def ready(self, services: Services) -> Response[Readiness]:
        """200 when a model is loaded and the log takes writes, else 503 with the reasons."""
        body = await check_readiness(services)
        return Response(body, status_code=200 if body.ready else 503)

    @get(
        "/model",
        **requires("predict"),
        summary="The model being served",
        responses={503: ResponseSpec(ErrorBody, description="No model is loaded")},
    )
    async def model(self, services: Services) -> ModelInfo:
        """Name, version, alias, run id, load time, threshold, holdout metrics, MLflow links
        (the version, its training run and its model card)."""
        model = services.holder.require()
        links = Links.from_settings(services.settings)
        return ModelInfo(
            name=model.name,
            version=model.version,
            alias=model.alias,
            run_id=model.run_id,
            loaded_at=model.loaded_at,
            threshold=model.threshold,
            metrics=dict(model.metrics),
            mlflow_url=links.model_version(model.name, model.version),
            run_url=links.optional_run(model.experiment_id, model.run_id),
            model_card_url=links.optional_model_card(model.experiment_id, model.run_id),
        )

    @get("/metrics", include_in_schema=False)
    async def metrics(self, state: State) -> Response[bytes]:
        """Prometheus text exposition (available before the lifespan's services, too)."""
        return Response(state.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)


# --- guards ---------------------------------------------------------------------------------


def _is_json(content_type: str) -> bool:
    """application/json or an application/*+json type (parameters such as charset aside)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def require_json_body(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: a handler that reads a body takes `Content-Type: application/json` only (415).

    Browsers send text/plain and form bodies cross-site without a preflight ("simple"
    requests); insisting on JSON means no other site's page can write predictions or feedback.
    """
    if "data" not in handler.parsed_fn_signature.parameters:
        return
    given = connection.headers.get("content-type")
    if given is None or not _is_json(given):
        got = f"got {given[:64]!r}" if given else "got no Content-Type"
        raise ClientException(
            status_code=415,
            detail=f"the request body must be JSON with Content-Type: application/json ({got})",
        )


# --- admin ----------------------------------------------------------------------------------


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the X-API-Key header must equal CRIMEFLOW_API_KEY (admin is off without a key).

    With auth on, the bearer guard (api.auth) has already required the admin scope, and the key
    is not consulted: one way in per configuration.
    """
    settings: Settings = connection.app.state.settings
    if settings.auth.enabled:
        return
    if settings.api.key is None or not settings.api.key.get_secret_value():
        raise PermissionDeniedException(
            detail="admin endpoints are disabled: set CRIMEFLOW_API_KEY to enable them"
        )
    given = connection.headers.get(API_KEY_HEADER)
    expected = settings.api.key.get_secret_value()
    # Constant-time comparison: response timing must not reveal how much of a key matched.
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise NotAuthorizedException(detail=f"missing or wrong {API_KEY_HEADER} header")


class AdminController(Controller):
    """Operator actions behind the API key."""

    path = "/admin"
    tags: ClassVar[list[str]] = ["admin"]  # type: ignore[misc]
    opt: ClassVar[dict[str, Any]] = {SCOPE_OPT: "admin"}  # type: ignore[misc]
    security: ClassVar[list[Any]] = bearer("admin")  # type: ignore[misc]
    guards: ClassVar[list[Any]] = [require_api_key]  # type: ignore[misc]

    @post(
        "/reload",
        status_code=200,
        summary="Load the champion now if the alias moved (the poll does this periodically)",
        security=[{API_KEY_SCHEME: []}],
        responses={
            401: ResponseSpec(ErrorBody, description="Missing or wrong API key or token"),
            403: ResponseSpec(
                ErrorBody, description="Admin is disabled, or the token lacks the admin scope"
            ),
            503: ResponseSpec(ErrorBody, description="The registry or the load failed"),
        },
    )
    async def reload(self, services: Services) -> ReloadOut:
        """Swap in the champion if it is not the served version; the old one serves meanwhile."""
        # A ModelReloadError becomes a 503; the old model keeps serving meanwhile.
        outcome = await services.holder.reload()
        return ReloadOut(
            changed=outcome.changed,
            version=outcome.version,
            previous_version=outcome.previous_version,
            detail=outcome.detail,
        )
