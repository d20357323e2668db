package storage

import (
	"errors"
	"fmt"
	"io"
)

// CheckFrames returns a reader of the frames of the store file at path,
// the segment at base, that checks each frame (length, CRC32-C, decoding,
// the offset it must hold: base, base+1, ...) before it hands out any of
// its bytes. r yields the file's bytes from the end of its header on,
// size bytes in all. A frame that fails ends the stream, after the frames
// before it, with a *CorruptionError (errors.Is ErrCorrupt) naming the
// file and position; so does a last frame cut short. A read error of r is
// returned as it is.
//
// It is for streaming a segment to somewhere else (a snapshot sent to a
// follower): damage is then reported where it is, by the node whose disk
// holds it, rather than by whoever receives the stream.
func CheckFrames(r io.Reader, path string, base, size uint64) io.Reader {
	return &frameChecker{r: r, path: path, base: base, next: base,
		pos: uint64(segmentHeaderWidth), end: uint64(segmentHeaderWidth) + size}
}

// frameChecker is the reader CheckFrames returns.
type frameChecker struct {
	r    io.Reader
	path string
	base uint64
	// next is the offset the next frame must hold, pos its position in
	// the file, end the position where the bytes end.
	next, pos, end uint64
	// frame is the checked frame being handed out, out how much of it
	// has been.
	frame []byte
	out   int
	err   error // sticky
}

// Read implements io.Reader.
func (c *frameChecker) Read(p []byte) (int, error) {
	for c.out == len(c.frame) {
		if c.err != nil {
			return 0, c.err
		}
		c.err = c.readFrame()
	}
	n := copy(p, c.frame[c.out:])
	c.out += n
	return n, nil
}

// readFrame reads and checks the next frame into c.frame; io.EOF at the
// end of the bytes.
func (c *frameChecker) readFrame() error {
	c.frame, c.out = c.frame[:0], 0
	left := c.end - c.pos
	if left == 0 {
		return io.EOF
	}
	corrupt := func(err error) error {
		return &CorruptionError{Segment: c.base, Offset: c.next, Path: c.path, Position: c.pos, Err: err}
	}
	if left < frameHeaderWidth {
		return corrupt(fmt.Errorf("%w: %d bytes left, a frame header takes %d", errShortFrame, left, frameHeaderWidth))
	}
	var header [frameHeaderWidth]byte
	if err := c.readFull(header[:]); err != nil {
		return err
	}
	n, _ := parseFrameHeader(header[:])
	if n > left-frameHeaderWidth {
		return corrupt(fmt.Errorf("%w: length %d, %d bytes left", errShortFrame, n, left-frameHeaderWidth))
	}
	frame := append(c.frame[:0], header[:]...)
	if uint64(cap(frame)) < frameHeaderWidth+n {
		frame = append(make([]byte, 0, frameHeaderWidth+n), header[:]...)
	}
	frame = frame[:frameHeaderWidth+n]
	if err := c.readFull(frame[frameHeaderWidth:]); err != nil {
		return err
	}
	payload := frame[frameHeaderWidth:]
	if err := checkRestoredFrame(header[:], payload, c.next); err != nil {
		return corrupt(err)
	}
	c.frame = frame
	c.pos += frameHeaderWidth + n
	c.next++
	return nil
}

// readFull fills b from r; bytes that end early are an error of their own
// (the file is shorter than it was said to be).
func (c *frameChecker) readFull(b []byte) error {
	if _, err := io.ReadFull(c.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("storage: read %s at %d: %w", c.path, c.pos, err)
	}
	return nil
}
