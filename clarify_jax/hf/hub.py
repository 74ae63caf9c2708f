"""Publishing an exported model directory on the Hugging Face Hub.

The token comes from the environment (`HF_TOKEN`) only, and is checked, with the repository id,
before any export or upload work starts, so a missing token costs nothing. `HF_ENDPOINT` points
the upload at another Hub (a private deployment, or the tests' fake server).
"""

from __future__ import annotations

import os
from pathlib import Path

TOKEN_ENV = "HF_TOKEN"
DEFAULT_COMMIT_MESSAGE = "Upload model exported by clarify-jax"


class HubError(ValueError):
    """A push that cannot start: no token, a malformed repository id, offline mode."""


def hub_token() -> str:
    """The write token from HF_TOKEN; a HubError naming the variable when it is unset."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise HubError(
            f"--push-to-hub needs a Hugging Face write token in the {TOKEN_ENV} environment "
            f"variable (create one at https://huggingface.co/settings/tokens, then "
            f"`export {TOKEN_ENV}=hf_...`); nothing was exported or uploaded"
        )
    return token


def check_push(repo_id: str) -> str:
    """Everything a push needs that can be checked without the network; returns the token."""
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    token = hub_token()
    if "/" not in repo_id:
        raise HubError(f"--push-to-hub {repo_id!r}: expected a repository id as user/name or org/name")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubError(f"--push-to-hub {repo_id!r}: {e}") from None
    if constants.is_offline_mode():
        raise HubError(
            "--push-to-hub: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so huggingface_hub "
            "refuses every request; unset it to upload"
        )
    return token


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
) -> str:
    """Create `repo_id` (a model repository; kept if it exists) and upload every file of `folder`
    in one commit. Returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = token or check_push(repo_id)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        # private=None leaves an existing repository's, or the namespace's default, visibility alone.
        repo = api.create_repo(repo_id, repo_type="model", private=True if private else None, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo.repo_id, folder_path=str(folder), repo_type="model", commit_message=commit_message
        )
    except HfHubHTTPError as e:  # the Hub's own message says what was wrong (token scope, quota...)
        raise HubError(f"upload of {folder} to {repo_id} on {api.endpoint} failed: {e}") from None
    return commit.commit_url
