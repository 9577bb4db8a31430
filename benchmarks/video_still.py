"""The README's still frame of ``faceage video --draw``: a clip made from a public-domain
photo, annotated by the command line, one frame of it saved.

    pip install scikit-image            # only for its copy of the photo
    python -m benchmarks.video_still    # writes benchmarks/results/video_frame.jpg

The photo is NASA's portrait of astronaut Eileen Collins, in the public domain, as
scikit-image ships it (``skimage/data/astronaut.png``; ``--image PATH`` takes another
copy). The clip is a slow "camera" pan and zoom over it, 640x480 at 30 fps, with a
little noise; no data set image goes into it, so the frame can be committed.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import RESULTS_DIR, ROOT

WIDTH, HEIGHT, FPS, FRAMES = 640, 480, 30.0, 60


def astronaut_path() -> Path:
    try:
        import skimage
    except ImportError:
        raise SystemExit(
            "pip install scikit-image (for its public-domain photo), or pass --image"
        ) from None
    return Path(skimage.__file__).parent / "data" / "astronaut.png"


def write_pan_clip(photo: np.ndarray, path: Path) -> None:
    """A camera panning and zooming slowly over ``photo``."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    height, width = photo.shape[:2]
    for index in range(FRAMES):
        share = index / (FRAMES - 1)
        zoom = 0.95 - 0.2 * share  # share of the photo's width in view
        view_w, view_h = width * zoom, width * zoom * HEIGHT / WIDTH
        cx = width * (0.47 + 0.05 * math.sin(2 * math.pi * share))
        cy = height * 0.3
        x0, y0 = cx - view_w / 2, max(0.0, min(cy - view_h / 2, height - view_h))
        matrix = np.array(
            [[WIDTH / view_w, 0, -x0 * WIDTH / view_w], [0, HEIGHT / view_h, -y0 * HEIGHT / view_h]]
        )
        frame = cv2.warpAffine(
            photo, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        noisy = np.clip(frame + rng.normal(0, 3.0, frame.shape), 0, 255).astype(np.uint8)
        writer.write(noisy)
    writer.release()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--image", type=Path, default=None, help="the photo (default: scikit-image's astronaut)"
    )
    parser.add_argument("--model", default="mobileagenet")
    parser.add_argument("--frame", type=int, default=45, help="which annotated frame to save")
    args = parser.parse_args(argv)
    photo = cv2.imread(str(args.image or astronaut_path()))
    if photo is None:
        raise SystemExit(f"cannot read {args.image or astronaut_path()}")
    with tempfile.TemporaryDirectory(prefix="faceage-video-still-") as folder:
        clip, drawn = Path(folder) / "clip.mp4", Path(folder) / "annotated.mp4"
        write_pan_clip(photo, clip)
        command = [sys.executable, "-m", "faceage", "video", str(clip), "--model", args.model]
        command += ["--out", str(Path(folder) / "faces.csv"), "--draw", str(drawn), "--no-progress"]
        subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        capture = cv2.VideoCapture(str(drawn))
        capture.set(cv2.CAP_PROP_POS_FRAMES, args.frame)
        ok, frame = capture.read()
        capture.release()
    if not ok:
        raise SystemExit(f"the annotated clip has no frame {args.frame}")
    target = RESULTS_DIR / "video_frame.jpg"
    cv2.imwrite(str(target), frame, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
