"""A conference-bridge port that moves one call's 20 ms frames in and out of Python bytes.

pjmedia's clock thread calls both callbacks every 20 ms for every call, so
they only copy bytes and hand them on. Copies go through the std::vector's
storage with ctypes: ``bytes(frame.buf)`` walks the vector element by element
through SWIG (150-330 µs a frame here), ctypes costs a few µs.

libstdc++ lays a ``std::vector<unsigned char>`` out as three pointers (begin,
end, capacity); SWIG's ``vec.this`` is the address of that object, so the first
pointer is the data. This holds for the manylinux ``pjsua2-python`` wheel.
"""

from __future__ import annotations

import ctypes
import sys
import time
import traceback
from collections.abc import Callable

import pjsua2 as pj

from voicebot.audio.frames import AudioFormat

FrameSource = Callable[[int], bytes]  # ts_ms -> one frame of PCM to send
FrameSink = Callable[[bytes, int], None]  # (frame, ts_ms) for each frame received


def _data_address(vec: pj.ByteVector) -> int:
    return ctypes.c_void_p.from_address(int(vec.this)).value or 0


def read_frame(frame: pj.MediaFrame) -> bytes:
    size = frame.size
    return ctypes.string_at(_data_address(frame.buf), size) if size else b""


def write_frame(frame: pj.MediaFrame, pcm: bytes) -> None:
    buf = frame.buf
    buf.resize(len(pcm))  # pjsua2 hands over an empty vector; the copy-out uses its size
    ctypes.memmove(_data_address(buf), pcm, len(pcm))
    frame.size = len(pcm)
    frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO


class MediaPort(pj.AudioMediaPort):
    """One call's audio: ``source`` is asked for every outbound frame, ``sink`` gets every inbound one.

    ``ts_ms`` counts media time per direction from the first frame, so a
    session's clock never depends on when Python got the GIL. A frame the
    far end did not send (no RTP yet, a gap) reaches the sink as silence, so
    the inbound clock keeps ticking.
    """

    def __init__(self, name: str, fmt: AudioFormat, source: FrameSource, sink: FrameSink) -> None:
        super().__init__()
        self.fmt = fmt
        self._source = source
        self._sink = sink
        self._silence = fmt.silence()
        self.frames_out = 0
        self.frames_in = 0
        self.errors = 0
        self.closed = False
        # monotonic time of the first frame with sound each way (the greeting; its echo)
        self.first_sound_out: float | None = None
        self.first_sound_in: float | None = None
        media_fmt = pj.MediaFormatAudio()
        media_fmt.init(pj.PJMEDIA_FORMAT_PCM, fmt.rate_hz, 1, fmt.frame_ms * 1000, 16)
        self.createPort(name, media_fmt)

    def close(self) -> None:
        """Take the port out of the conference bridge now, while this object is whole (SIP-owner thread).

        Dropping the last reference does it too, but too late: Python clears the object's
        attributes first, then runs the C++ destructor, which releases the GIL and waits for
        the clock thread; a callback in that window met a half-destroyed port (dozens of
        AttributeErrors a minute at 40 calls/s). After ``close()`` no pjsua2 method may be
        called on this object; its Python attributes (counters, first-sound times) stay readable.
        """
        if self.closed:
            return
        self.closed = True
        # the SWIG destructor disowns the object, so Python's own dealloc does not delete it again
        pj.AudioMediaPort.__swig_destroy__(self)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        try:
            pcm = self._source(self.frames_out * self.fmt.frame_ms)
            self.frames_out += 1
            if len(pcm) != self.fmt.bytes_per_frame:
                pcm = self._silence
            if self.first_sound_out is None and pcm != self._silence:
                self.first_sound_out = time.monotonic()
            write_frame(frame, pcm)
        except Exception:  # pjsua2 prints and swallows; count it so the call record shows it
            self._failed()

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            pcm = read_frame(frame) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO else b""
            ts_ms = self.frames_in * self.fmt.frame_ms
            self.frames_in += 1
            if len(pcm) != self.fmt.bytes_per_frame:
                pcm = self._silence
            if self.first_sound_in is None and pcm != self._silence:
                self.first_sound_in = time.monotonic()
            self._sink(pcm, ts_ms)
        except Exception:
            self._failed()

    def _failed(self) -> None:
        self.errors += 1
        if self.errors == 1:  # once per call: the clock thread must not flood stderr at 50 Hz
            traceback.print_exc(file=sys.stderr)
