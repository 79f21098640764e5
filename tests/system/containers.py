"""A container engine driven from the tests: podman, else docker, whichever has a working engine.

The image is built for real: `docker/build-base-image` makes a stand-in for the Docker Hub
Python base from Debian's own packages (debootstrap, so it needs root), and
`docker/Dockerfile` is built on it with that image as `PYTHON_IMAGE`. Images and containers
get names unique to the test run and are removed afterwards.

The machine's engine settings are the engine's own business (podman reads
/etc/containers/containers.conf, or `CONTAINERS_CONF`). The base trusts the CA certificates
in `EXTRA_CA_CERTS` (see build-base-image) or, when that is not set, those this host's
administrator added under /usr/local/share/ca-certificates: the host reaches PyPI with them,
so pip in the image build can too (a site's proxy or mirror with a CA of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_BASE_IMAGE = REPO / "docker" / "build-base-image"
ENGINES = ("podman", "docker")
LOCAL_CA_CERTIFICATES = Path("/usr/local/share/ca-certificates")


class EngineFailed(RuntimeError):
    """An engine command failed; the message carries the command and its output."""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def find_engine() -> tuple[Engine | None, str]:
    """The first of podman and docker whose engine answers `info`, or None and why not."""
    reasons = []
    for program in ENGINES:
        if shutil.which(program) is None:
            reasons.append(f"{program} not installed")
            continue
        try:
            info = subprocess.run(
                [program, "info"], capture_output=True, text=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired:
            reasons.append(f"`{program} info` did not answer within 60 s")
            continue
        if info.returncode == 0:
            return Engine(program), ""
        reasons.append(f"`{program} info` failed: {_last_line(info.stderr)}")
    return None, "; ".join(reasons)


def build_unavailable_reason() -> str | None:
    """Why the base image cannot be built here (None when it can)."""
    if os.geteuid() != 0:
        return "docker/build-base-image runs debootstrap, which needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap not installed (apt-get install debootstrap)"
    return None


def run_name(kind: str) -> str:
    """A name no other run uses: `labintake-test-<kind>-<random>`."""
    return f"labintake-test-{kind}-{uuid.uuid4().hex[:8]}"


@dataclass
class Engine:
    program: str

    @property
    def is_podman(self) -> bool:
        return self.program == "podman"

    def command(
        self, *args: str, check: bool = True, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.program, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
        if check and result.returncode != 0:
            raise EngineFailed(
                f"{self.program} {' '.join(args)} exited {result.returncode}\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        return result

    # -- images -------------------------------------------------------------------------
    def build_base(self, image: str, log: Path) -> float:
        """Run docker/build-base-image for this engine; the seconds it took."""
        env = {**os.environ, "ENGINE": self.program}
        if "EXTRA_CA_CERTS" not in env and any(LOCAL_CA_CERTIFICATES.glob("*.crt")):
            env["EXTRA_CA_CERTS"] = str(LOCAL_CA_CERTIFICATES)
        started = time.monotonic()
        with log.open("w") as out:
            result = subprocess.run(
                [str(BUILD_BASE_IMAGE), image],
                env=env,
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
                timeout=1200,
                check=False,
            )
        if result.returncode != 0 or result.stdout.strip() != image:
            raise EngineFailed(
                f"build-base-image exited {result.returncode}, printed {result.stdout!r}\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        return time.monotonic() - started

    def build_image(self, base: str, image: str, log: Path) -> float:
        """Build docker/Dockerfile on `base`; the seconds it took."""
        # podman: the Docker image format keeps HEALTHCHECK (OCI has no such field), and
        # without layer caching no intermediate images are left behind.
        options = ["--format", "docker", "--layers=false"] if self.is_podman else []
        started = time.monotonic()
        with log.open("w") as out:
            result = subprocess.run(
                [
                    self.program,
                    "build",
                    *options,
                    "--build-arg",
                    f"PYTHON_IMAGE={base}",
                    "-f",
                    "docker/Dockerfile",
                    "-t",
                    image,
                    ".",
                ],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1800,
                check=False,
            )
        if result.returncode != 0:
            raise EngineFailed(
                f"{self.program} build exited {result.returncode}\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        return time.monotonic() - started

    def remove_image(self, image: str) -> None:
        self.command("rmi", image, check=False)

    def run_failure(self, image: str) -> str | None:
        """Why this engine cannot run a container of `image` here (None when it can)."""
        result = self.command("run", "--rm", image, "python3", "-c", "print('ok')", check=False)
        if result.returncode == 0 and result.stdout.strip() == "ok":
            return None
        return _last_line(result.stderr or result.stdout)

    # -- containers ---------------------------------------------------------------------
    def start(
        self,
        name: str,
        image: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> None:
        """`run --detach` a container called `name`."""
        environment = [f"--env={key}={value}" for key, value in (env or {}).items()]
        self.command("run", "--detach", "--name", name, *environment, *options, image, *args)

    def run_once(
        self,
        name: str,
        image: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run a container to its end (kept, for its logs and exit code)."""
        environment = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.command(
            "run",
            "--name",
            name,
            *environment,
            *options,
            image,
            *args,
            check=False,
            timeout=timeout,
        )

    def logs(self, name: str) -> str:
        result = self.command("logs", name, check=False)
        return result.stdout + result.stderr

    def exec(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.command("exec", name, *argv, check=False)

    def inspect(self, name: str, template: str) -> str:
        return self.command("inspect", "--format", template, name).stdout.strip()

    def published_port(self, name: str, container_port: int) -> int:
        """The host port a published container port was given."""
        text = self.command("port", name, f"{container_port}/tcp").stdout.strip()
        return int(text.splitlines()[0].rsplit(":", 1)[1])

    def health_check(self, name: str) -> subprocess.CompletedProcess[str]:
        """Run the image's HEALTHCHECK command once, as the engine would."""
        if self.is_podman:
            return self.command("healthcheck", "run", name, check=False)
        test = json.loads(self.inspect(name, "{{json .Config.Healthcheck.Test}}"))
        assert test[0] == "CMD", test
        return self.exec(name, *test[1:])

    def stop(self, name: str, timeout: int) -> float:
        """Stop (SIGTERM, SIGKILL after `timeout` seconds); the seconds it took."""
        started = time.monotonic()
        self.command("stop", "-t", str(timeout), name, timeout=timeout + 60)
        return time.monotonic() - started

    def exit_code(self, name: str) -> int:
        return int(self.inspect(name, "{{.State.ExitCode}}"))

    def remove(self, *names: str) -> None:
        for name in names:
            # --volumes: also the anonymous volume of the image's VOLUME, which would stay.
            self.command("rm", "--force", "--volumes", name, check=False)

    def remove_volume(self, name: str) -> None:
        self.command("volume", "rm", "--force", name, check=False)
