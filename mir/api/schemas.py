"""Response and request shapes of the HTTP API (they make the OpenAPI schema at ``/openapi.json``)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TRACK_ID = r"^[0-9a-fA-F]{4,64}$"  # a track id, content hash, or a unique prefix of either (as in the CLI)
TRACK_ID_DOC = "track id, content hash, or a unique prefix of either (4-64 hex characters)"


class Error(BaseModel):
    detail: str | list
    request_id: str | None = None


class TrackSummary(BaseModel):
    track_id: str
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = Field(None, description="the file's genre tag")
    genre_pred: str | None = Field(None, description="the model's predicted genre")
    year: float | None = None
    bpm: float | None = None
    key: str | None = None
    mode: str | None = None
    tags: list[str] = Field(default_factory=list, description="decided tags of the model")


class TrackPage(BaseModel):
    total: int
    offset: int
    limit: int
    model_id: str | None
    tracks: list[TrackSummary]


class TrackDetail(BaseModel):
    track_id: str
    hash: str
    path: str | None
    status: str
    format: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: str | None = None
    descriptors: dict = Field(default_factory=dict, description="tempo, key, mode, key_confidence, loudness, …")
    model_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    tag_probs: dict[str, float] = Field(default_factory=dict)
    genre_pred: str | None = None
    genre_probs: dict[str, float] = Field(default_factory=dict)
    music: float | None = Field(None, description="probability that the track is music (models with a music gate)")


class SimilarResult(BaseModel):
    rank: int
    track_id: str
    path: str | None = None
    artist: str | None = None
    title: str | None = None
    score: float
    explanation: str
    why: dict


class SimilarResponse(BaseModel):
    model_id: str
    seeds: dict
    k: int
    found: int
    shortfall: str | None = None  # why fewer than k came back (None when k did)
    results: list[SimilarResult]


class Analysis(BaseModel):
    file: str
    size: int
    model_id: str
    duration: float
    tags: list[str]
    tag_probs: dict[str, float]
    genre: str
    genre_probs: dict[str, float]
    bpm: float | None
    key: str | None
    mode: str | None
    embedding: list[float]
    music: float | None = Field(None, description="probability that the file is music (models with a music gate)")
    added: str | None = Field(None, description="track id, when ?add=true catalogued the file")
    similar: list[SimilarResult] | None = None


class Recommendation(BaseModel):
    rank: int
    track_id: str
    score: float
    title: str | None = None
    artist: str | None = None


class Recommendations(BaseModel):
    user: str
    known_user: bool = Field(description="the user has events; unknown users get the most popular tracks")
    method: str
    recommendations: list[Recommendation]


class PlaylistRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[str] = Field(min_length=1, max_length=100, description="seed track ids (played in this order)")
    length: int = Field(30, ge=1, le=1000)
    to: str | None = Field(None, description="path mode: walk from the one seed to this track")
    flow: float = Field(0.5, ge=0, le=1)
    format: Literal["json", "m3u"] = "json"


class PlaylistEntry(BaseModel):
    track_id: str
    path: str | None = None
    artist: str | None = None
    title: str | None = None
    genre: str | None = None
    tempo: float | None = None
    key: str | None = None
    duration: float | None = None
    score: float | None = None


class Playlist(BaseModel):
    mode: str
    seeds: list[str]
    relaxed: int
    settings: dict
    tracks: list[PlaylistEntry]


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Stats(BaseModel):
    library: dict
    model_id: str | None
    tagged_models: list[str]
    index: dict | None
    read_only: bool
    recommender: dict


class GenerateFilters(BaseModel):
    """The filters of ``mir similar`` on the neighbours (as ``GET /similar`` takes them)."""
    model_config = ConfigDict(extra="forbid")
    genre: list[str] = Field(default_factory=list, max_length=50, description="any of these predicted genres")
    file_genre: list[str] = Field(default_factory=list, max_length=50, description="any of these file genres")
    with_tags: list[str] = Field(default_factory=list, max_length=50, description="all of these decided tags")
    bpm: str | None = Field(None, max_length=40, description="tempo range, e.g. 90-120")
    key: list[str] = Field(default_factory=list, max_length=24, description="keys, e.g. 'A minor', Am, F#")
    year: str | None = Field(None, max_length=40, description="year range, e.g. 1990-1999")
    exclude_track: list[str] = Field(default_factory=list, max_length=100)
    exclude_artist: list[str] = Field(default_factory=list, max_length=100)
    max_per_artist: int | None = Field(None, ge=1, le=1000)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracks: list[str] = Field(default_factory=list, max_length=100, description="seed track ids")
    tags: list[str] = Field(default_factory=list, max_length=50, description="seed tags, e.g. ['piano', 'slow']")
    user: str | None = Field(None, min_length=1, max_length=200,
                             description="a listener of the server's --events whose taste seeds the piece")
    duration: float = Field(60.0, ge=10, le=600, description="seconds")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="random seed: the same request gives the same piece")
    temperature: float = Field(1.0, gt=0, le=5)
    top_p: float = Field(0.95, gt=0, le=1)
    tempo: float | None = Field(None, ge=30, le=300, description="BPM (default: the neighbours' median)")
    key: str | None = Field(None, max_length=20, description="e.g. 'A minor' (default: the neighbours' commonest)")
    neighbours: int = Field(20, ge=4, le=500, description="how many similar tracks are retrieved")
    sources: int = Field(8, ge=0, le=500, description="segments come from this many of them, the most typical "
                                                       "(0: all)")
    stereo: bool = Field(False, description="44.1 kHz stereo instead of mono at the analysis rate")
    filters: GenerateFilters = Field(default_factory=GenerateFilters)


class JobResult(BaseModel):
    audio: str = Field(description="URL of the generated audio (WAV; range requests)")
    provenance: dict = Field(description="seeds, neighbours, generator, settings and per-beat sources")


class Job(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    stage: str
    params: dict
    created: float
    started: float | None = None
    finished: float | None = None
    result: JobResult | None = None
    error: str | None = None
    cancel_requested: bool = Field(False, description="a running job asked to stop: it ends at its next step")


class JobList(BaseModel):
    total: int = Field(description="jobs in the requested state (all states when none was given)")
    jobs: list[Job] = Field(description="newest first, ``offset`` and ``limit`` applied")
