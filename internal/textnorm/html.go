package textnorm

import (
	"bytes"
	"io"
)

// HTML normalization: a port of ClamAV 1.4's htmlnorm.c
// (cli_html_normalise, as cli_scanhtml calls it: no link collection),
// which makes the three normalized copies of an HTML file that ClamAV
// matches signatures against: nocomment.html, notags.html and, through
// the JavaScript normalizer (js.go), javascript. It reads the file in
// ClamAV's chunks (readChunk) and runs the same state machine byte for
// byte, including the decoding of JScript.Encode/VBScript.Encode scripts.
// It also makes, on request, the files of data: URIs (rfc2397/, which
// ClamAV scans as files of their own). What it does not make: the images
// ClamAV extracts from <style> blocks.

const (
	htmlStrLength = 1024 // HTML_STR_LENGTH
	htmlChunk     = 8192 // cli_readchunk's max_len
	htmlFileBuff  = 8192 // HTML_FILE_BUFF_LEN
)

type htmlState int

const (
	hBad htmlState = iota
	hNorm
	h8bit
	hComment
	hCharRef
	hEntityRefDecode
	hSkipWS
	hTrimWS
	hTag
	hTagArg
	hTagArgVal
	hTagArgEqual
	hProcessTag
	hCharRefDecode
	hLookforScrenc
	hJSDecode
	hJSDecodeLength
	hJSDecodeDecrypt
	hSpecialChar
	hRFC2397Type
	hRFC2397Init
	hRFC2397Data
	hRFC2397Finish
	hRFC2397Esc
	hEscapeChar
)

type tagType int

const (
	tagDontExtract tagType = iota
	tagScript
	tagStyle
)

type quoting int

const (
	singleQuoted quoting = iota
	doubleQuoted
	notQuoted
)

// fileBuff is htmlnorm's file_buff_t: output through an 8 KiB buffer. The
// buffer matters, because the normalizer takes back the last byte it
// wrote ("<" before a comment) only while that byte is still buffered.
type fileBuff struct {
	w   io.Writer
	buf []byte
	err error
}

func newFileBuff(w io.Writer) *fileBuff {
	return &fileBuff{w: w, buf: make([]byte, 0, htmlFileBuff)}
}

func (f *fileBuff) flush() {
	if len(f.buf) > 0 {
		if f.err == nil {
			_, f.err = f.w.Write(f.buf)
		}
		f.buf = f.buf[:0]
	}
}

func (f *fileBuff) c(b byte) {
	if len(f.buf) == htmlFileBuff {
		f.flush()
	}
	f.buf = append(f.buf, b)
}

func (f *fileBuff) str(s []byte) {
	if len(f.buf)+len(s) >= htmlFileBuff {
		f.flush()
	}
	if len(s) >= htmlFileBuff {
		f.flush()
		if f.err == nil {
			_, f.err = f.w.Write(s)
		}
		return
	}
	f.buf = append(f.buf, s...)
}

// unput takes back the last byte written, if it is still buffered.
func (f *fileBuff) unput() {
	if len(f.buf) > 0 {
		f.buf = f.buf[:len(f.buf)-1]
	}
}

func isSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isXDigit(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
func isAlnum(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func toLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// cstr cuts b at its first NUL, as C string functions read it.
func cstr(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// chunkReader is cli_readchunk over a stream: chunks of at most 8191
// bytes with NULs skipped, cut after their last whitespace when the next
// byte is not whitespace. It keeps the last chunk's worth of bytes read so
// that it can step back as ClamAV does.
type chunkReader struct {
	r   io.Reader
	buf []byte // buf[pos:] unread; up to htmlChunk bytes before pos kept
	pos int
	eof bool
	err error
}

// fill makes at least n unread bytes available, unless the stream ends.
func (c *chunkReader) fill(n int) {
	for len(c.buf)-c.pos < n && !c.eof {
		if keep := c.pos - htmlChunk; keep > 0 {
			m := copy(c.buf, c.buf[keep:])
			c.buf = c.buf[:m]
			c.pos -= keep
		}
		if cap(c.buf)-len(c.buf) < htmlChunk {
			nb := make([]byte, len(c.buf), 2*cap(c.buf)+4*htmlChunk)
			copy(nb, c.buf)
			c.buf = nb
		}
		m, err := c.r.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+m]
		if err == io.EOF {
			c.eof = true
		} else if err != nil {
			c.eof, c.err = true, err
		}
	}
}

func rewindToSpace(chunk []byte) int {
	count, n := len(chunk), len(chunk)
	for n > 1 && !isSpace(chunk[n-1]) {
		n--
	}
	if n == 1 {
		return count
	}
	return n
}

// next returns the next chunk, or nil at the end.
func (c *chunkReader) next() []byte {
	c.fill(htmlChunk)
	n := min(len(c.buf)-c.pos, htmlChunk-1)
	if n <= 0 {
		return nil
	}
	seg := c.buf[c.pos : c.pos+n]
	var chunk []byte
	if i := bytes.IndexByte(seg, 0); i < 0 {
		chunk = bytes.Clone(seg)
		c.pos += n
	} else {
		chunk = append(make([]byte, 0, htmlChunk), seg[:i]...)
		c.pos += i
		for len(chunk) < htmlChunk-1 {
			c.fill(1)
			if c.pos >= len(c.buf) {
				break
			}
			b := c.buf[c.pos]
			c.pos++
			if b != 0 {
				chunk = append(chunk, b)
			}
		}
	}
	c.fill(1)
	if c.pos < len(c.buf) && !isSpace(c.buf[c.pos]) {
		if count := rewindToSpace(chunk); count < len(chunk) {
			c.pos -= len(chunk) - count
			chunk = chunk[:count]
		}
	}
	return chunk
}

// HTMLOutputs receives what NormalizeHTML makes.
type HTMLOutputs struct {
	// NoComment receives nocomment.html: the page lower-cased, comments
	// out, whitespace runs one space, tags rewritten with their
	// arguments, character and entity references decoded.
	NoComment io.Writer
	// NoTags receives notags.html: the text of the page between tags,
	// with the href of <a> and the src of <img>.
	NoTags io.Writer
	// Script, if not nil, receives the "javascript" output: each script
	// of the page through ClamAV's JavaScript normalizer, as
	// "<script>…</script>", the scripts separated by newlines.
	Script io.Writer
	// DataURI, if not nil, is called for each data: URI of a tag argument
	// and receives the file ClamAV writes for it under rfc2397/ (and
	// scans as a file of its own, a mail): "From html-normalise", a
	// Content-type header with the URI's media type, a
	// Content-transfer-encoding header for ;base64, a blank line, the
	// data with %xx escapes decoded. The writer is closed at the URI's
	// end.
	DataURI func() io.WriteCloser
	// StyleImage, if not nil, is called with each image ClamAV extracts
	// from the page's <style> blocks (the base64 data of a CSS
	// url(data:…;base64,…)), which it scans as a file of its own.
	StyleImage func(image []byte)
}

type screncState struct {
	length   uint32
	sum      uint32
	tablePos uint8
}

// tagArgs is htmlnorm's tag_arguments_t without contents.
type tagArgs struct {
	tag, value [][]byte // value nil: an argument without value
}

func (t *tagArgs) add(tag, value []byte, hasValue bool) {
	t.tag = append(t.tag, bytes.Clone(cstr(tag)))
	if !hasValue {
		t.value = append(t.value, nil)
		return
	}
	v := cstr(value)
	if len(v) > 0 && v[0] == '"' {
		v = v[1:]
		if len(v) > 0 {
			v = v[:len(v)-1]
		}
	}
	t.value = append(t.value, append([]byte{}, v...))
}

func (t *tagArgs) get(tag string) ([]byte, bool) {
	for i, n := range t.tag {
		if string(n) == tag {
			return t.value[i], t.value[i] != nil
		}
	}
	return nil, false
}

func (t *tagArgs) set(tag, value string) {
	for i, n := range t.tag {
		if string(n) == tag {
			t.value[i] = []byte(value)
			return
		}
	}
}

func (t *tagArgs) free() { t.tag, t.value = t.tag[:0], t.value[:0] }

func equalFoldASCII(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if toLower(a[i]) != toLower(b[i]) {
			return false
		}
	}
	return true
}

// u16Normalize is entconv.c's u16_normalize: NUL nothing, below 0xff the
// byte itself, the three full stops of bb #4097 a ".", the rest "&#xhhhh;".
func u16Normalize(u uint16) []byte {
	switch {
	case u == 0:
		return nil
	case u < 0xff:
		return []byte{byte(u)}
	case u == 0x3002 || u == 0xff0e || u == 0xfe52:
		return []byte{'.'}
	}
	const hex = "0123456789abcdef"
	return []byte{'&', '#', 'x', hex[u>>12], hex[u>>8&0xf], hex[u>>4&0xf], hex[u&0xf], ';'}
}

// NormalizeHTML normalizes the HTML file r as ClamAV's htmlnorm does for
// a scan, writing its outputs to out (a nil writer or function: that
// output is not made). Memory is bounded (two chunks and the state
// machine's fixed buffers), but for the tokens of one script and the text
// of the <style> blocks, which ClamAV holds too. It returns r's error or
// an output's.
func NormalizeHTML(r io.Reader, out HTMLOutputs) error {
	if out.NoComment == nil {
		out.NoComment = io.Discard
	}
	if out.NoTags == nil {
		out.NoTags = io.Discard
	}
	o2, text := newFileBuff(out.NoComment), newFileBuff(out.NoTags)
	n := &htmlNorm{o2: o2, text: text, cr: &chunkReader{r: r}, script: out.Script, jsBegin: -1,
		dataURI: out.DataURI, styleImage: out.StyleImage}
	n.run()
	if n.js != nil {
		n.jsFinish()
	}
	n.closeData()
	o2.flush()
	text.flush()
	switch {
	case n.cr.err != nil:
		return n.cr.err
	case o2.err != nil:
		return o2.err
	case text.err != nil:
		return text.err
	}
	return n.scriptErr
}

type htmlNorm struct {
	o2, text *fileBuff
	cr       *chunkReader
	// The script being normalized (nil: none, or no Script output), and
	// where in the current chunk its text starts (-1: the chunk's start).
	script        io.Writer
	js            *jsParser
	jsBegin       int
	scriptWritten bool
	scriptErr     error
	// The file of the data: URI being read (nil: none).
	dataURI   func() io.WriteCloser
	data      *fileBuff
	dataClose io.Closer
	// The text of the page's <style> blocks (nil: none), for StyleImage.
	styleImage func([]byte)
	style      []byte
}

func (h *htmlNorm) closeData() {
	if h.data == nil {
		return
	}
	h.data.flush()
	err := h.dataClose.Close()
	if h.data.err != nil {
		err = h.data.err
	}
	if err != nil && h.scriptErr == nil {
		h.scriptErr = err
	}
	h.data, h.dataClose = nil, nil
}

// dataC writes to the data: URI's file, if there is one.
func (h *htmlNorm) dataC(c byte) {
	if h.data != nil {
		h.data.c(c)
	}
}

// jsProcess is htmlnorm's js_process: the script text of this chunk from
// begin (or the chunk's start) to end (or ptr) to the normalizer; at the
// end of the script, its output.
func (h *htmlNorm) jsProcess(line []byte, begin, end, ptr int, inTag tagType) {
	if begin < 0 {
		begin = 0
	}
	if end < 0 {
		end = ptr
	}
	if end > begin && end <= len(line) {
		h.js.processBuffer(line[begin:end])
	}
	if inTag == tagDontExtract {
		h.jsFinish()
	}
}

func (h *htmlNorm) jsFinish() {
	h.js.parseDone()
	if err := h.js.output(h.script, !h.scriptWritten); err != nil && h.scriptErr == nil {
		h.scriptErr = err
	}
	h.scriptWritten = true
	h.js = nil
}

func (h *htmlNorm) run() {
	o2, text := h.o2, h.text
	var (
		tagLength, tagArgLength, tagValLength, entityValLength int
		binary, escape, hex                                    bool
		value                                                  int64
		lookForScrenc, inScrenc, textSpaceWritten              bool
		inTag                                                  = tagDontExtract
		state, nextState, savedNextState                       = hNorm, hBad, hBad
		tag, tagArg, tagVal, entityVal                         [htmlStrLength + 1]byte
		tagName                                                []byte
		args                                                   tagArgs
		quoted                                                 = notQuoted
		length                                                 int
		scr                                                    screncState
		mbchar, mbchar2                                        uint32
		screncAt                                               = -1 // ptr_screnc: index in line, -1 none
		styleBegin                                             int
	)
	line := h.cr.next()
	p := 0
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	for line != nil {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
	chunk:
		for p < len(line) {
			c := line[p]
			if !binary && c == '\n' {
				line[p] = ' '
				continue
			}
			if !binary && c == '\r' {
				p++
				continue
			}
			switch state {
			case hSpecialChar:
			case hBad:
				return
			case hSkipWS:
				if isSpace(c) {
					p++
				} else {
					state, nextState = nextState, hBad
				}
			case hTrimWS:
				if isSpace(c) {
					p++
				} else {
					if inTag == tagDontExtract {
						o2.c(' ')
					}
					state, nextState = nextState, hBad
				}
			case h8bit:
				if c < 0x80 || mbchar >= 0x10000 {
					if mbchar == 0xE38082 || mbchar == 0xEFBC8E || mbchar == 0xEFB992 ||
						(mbchar == 0xA1 && (c == 0x43 || c == 0x44 || c == 0x4F)) {
						o2.c('.')
						text.c('.')
						if mbchar == 0xA1 {
							p++
							mbchar = 0
							continue
						}
					} else {
						c0, c1, c2 := byte(mbchar>>16), byte(mbchar>>8), byte(mbchar)
						if c0 != 0 {
							o2.c(c0)
							text.c(c0)
						}
						if c0 != 0 || c1 != 0 {
							o2.c(c1)
							text.c(c1)
						}
						o2.c(c2)
						text.c(c1) // sic: ClamAV writes c1 here
					}
					mbchar = 0
					state, nextState = nextState, hNorm
				} else {
					mbchar = mbchar<<8 | uint32(c)
					p++
				}
			case hNorm:
				switch {
				case c == '<':
					o2.c('<')
					if inTag == tagDontExtract && !textSpaceWritten {
						text.c(' ')
						textSpaceWritten = true
					}
					p++
					state, tagLength, nextState = hSkipWS, 0, hTag
				case isSpace(c):
					if !textSpaceWritten && inTag == tagDontExtract {
						text.c(' ')
						textSpaceWritten = true
					}
					state, nextState = hTrimWS, hNorm
				case c == '&':
					if !textSpaceWritten && inTag == tagDontExtract {
						text.c(' ')
						textSpaceWritten = true
					}
					state, nextState = hCharRef, hNorm
					p++
				case c >= 0x80:
					state, nextState = h8bit, hNorm
					mbchar = uint32(c)
					p++
				default:
					l := toLower(c)
					if inTag != tagDontExtract && l == '\'' {
						l = '"'
					}
					o2.c(l)
					if inTag == tagDontExtract {
						if c < 0x20 {
							if !textSpaceWritten {
								text.c(' ')
								textSpaceWritten = true
							}
						} else {
							text.c(l)
							textSpaceWritten = false
						}
					}
					p++
				}
			case hTag:
				switch {
				case tagLength == 0 && c == '!':
					if inTag != tagDontExtract {
						o2.c('!')
					} else {
						o2.unput()
					}
					state, nextState = hComment, hBad
					p++
				case c == '>':
					o2.c('>')
					p++
					tagName = bytes.Clone(tag[:tagLength])
					state, nextState = hSkipWS, hProcessTag
				case !isSpace(c):
					o2.c(toLower(c))
					if inTag != tagDontExtract && tagLength == 0 && c != '/' {
						state = hNorm
					}
					if tagLength < htmlStrLength {
						tag[tagLength] = toLower(c)
						tagLength++
					}
					p++
				default:
					tagName = bytes.Clone(tag[:tagLength])
					state, tagArgLength = hSkipWS, 0
					if inTag == tagDontExtract {
						nextState = hTagArg
					} else {
						nextState = hProcessTag
					}
				}
			case hTagArg:
				switch {
				case c == '=':
					o2.c('=')
					p++
					state, escape, quoted, tagValLength, nextState = hSkipWS, false, notQuoted, 0, hTagArgVal
				case isSpace(c):
					p++
					state, nextState = hSkipWS, hTagArgEqual
				case c == '>':
					o2.c('>')
					if tagArgLength > 0 {
						args.add(tagArg[:tagArgLength], nil, false)
					}
					p++
					state, nextState = hProcessTag, hBad
				default:
					if tagArgLength == 0 {
						o2.c(' ')
					}
					o2.c(toLower(c))
					if tagArgLength < htmlStrLength {
						tagArg[tagArgLength] = toLower(c)
						tagArgLength++
					}
					p++
				}
			case hTagArgEqual:
				if c == '=' {
					o2.c('=')
					p++
					state, escape, quoted, tagValLength, nextState = hSkipWS, false, notQuoted, 0, hTagArgVal
				} else {
					if tagArgLength > 0 {
						args.add(tagArg[:tagArgLength], nil, false)
					}
					tagArgLength = 0
					state, nextState = hTagArg, hBad
				}
			case hTagArgVal:
				switch {
				case tagValLength == 5 && string(tagVal[:5]) == "data:",
					tagValLength == 6 && string(tagVal[:6]) == "\"data:":
					o2.unput()
					if quoted != notQuoted {
						o2.c('"')
					}
					tagValLength = 0
					state, nextState = hRFC2397Type, hTagArg
				case c == '&':
					state, nextState = hCharRef, hTagArgVal
					p++
				case c == '\'' || c == '"':
					q := singleQuoted
					if c == '"' {
						q = doubleQuoted
					}
					o2.c('"')
					if tagValLength < htmlStrLength {
						tagVal[tagValLength] = '"'
						tagValLength++
					}
					p++
					if tagValLength == 1 {
						quoted = q
					} else if !escape && quoted == q {
						args.add(tagArg[:tagArgLength], tagVal[:tagValLength], true)
						state, tagArgLength, nextState = hSkipWS, 0, hTagArg
					}
				case isSpace(c) || c == '>':
					if quoted == notQuoted {
						args.add(tagArg[:tagArgLength], tagVal[:tagValLength], true)
						state, tagArgLength, nextState = hSkipWS, 0, hTagArg
					} else {
						o2.c(c)
						if tagValLength < htmlStrLength {
							if isSpace(c) {
								tagVal[tagValLength] = ' '
							} else {
								tagVal[tagValLength] = '>'
							}
							tagValLength++
						}
						state, escape, quoted, nextState = hSkipWS, false, notQuoted, hTagArgVal
						p++
					}
				default:
					if mbchar2 != 0 && (c < 0x80 || mbchar2 >= 0x10000) {
						if mbchar2 == 0xE38082 || mbchar2 == 0xEFBC8E || mbchar2 == 0xEFB992 ||
							(mbchar2 == 0xA1 && (c == 0x43 || c == 0x44 || c == 0x4F)) {
							o2.c('.')
							if tagValLength < htmlStrLength {
								tagVal[tagValLength] = '.'
								tagValLength++
							}
							if mbchar2 == 0xA1 {
								p++
								mbchar2 = 0
								continue
							}
						} else {
							c0, c1, c2 := byte(mbchar2>>16), byte(mbchar2>>8), byte(mbchar2)
							if c0 != 0 {
								o2.c(c0)
							}
							if c0 != 0 || c1 != 0 {
								o2.c(c1)
							}
							o2.c(c2)
							if c0 != 0 && tagValLength < htmlStrLength {
								tagVal[tagValLength] = c0
								tagValLength++
							}
							if (c0 != 0 || c1 != 0) && tagValLength < htmlStrLength {
								tagVal[tagValLength] = c1
								tagValLength++
							}
							if tagValLength < htmlStrLength {
								tagVal[tagValLength] = c2
								tagValLength++
							}
						}
						mbchar2 = 0
					}
					if c >= 0x80 {
						mbchar2 = mbchar2<<8 | uint32(c)
					} else {
						o2.c(toLower(c))
						if tagValLength < htmlStrLength {
							tagVal[tagValLength] = c
							tagValLength++
						}
					}
					p++
				}
				escape = at(p) == '\\'
			case hComment:
				if inTag != tagDontExtract && !isSpace(c) {
					l := toLower(c)
					if l == '\'' {
						l = '"'
					}
					o2.c(l)
				}
				if c == '>' {
					state, nextState = hSkipWS, hNorm
				}
				p++
			case hProcessTag:
				state, nextState = hSkipWS, hNorm
				switch {
				case len(tagName) > 0 && tagName[0] == '/':
					switch {
					case string(tagName) == "/script":
						inTag = tagDontExtract
						if h.js != nil {
							h.jsProcess(line, h.jsBegin, p, p, inTag)
							h.jsBegin = -1
						}
					case string(tagName) == "/style" && inTag == tagStyle:
						if p-len("</style>") < styleBegin {
							return // "style chunk size underflow": ClamAV stops here
						}
						h.style = append(h.style, line[styleBegin:p-len("</style>")]...)
						inTag = tagDontExtract
					}
				case string(tagName) == "script":
					v, ok := args.get("language")
					if ok && equalFoldASCII(v, "jscript.encode") {
						args.set("language", "javascript")
						state, nextState = hSkipWS, hJSDecode
						outputTag(o2, tagName, &args)
					} else if ok && equalFoldASCII(v, "vbscript.encode") {
						args.set("language", "vbscript")
						state, nextState = hSkipWS, hJSDecode
						outputTag(o2, tagName, &args)
					}
					inTag = tagScript
					if h.script != nil && h.js == nil {
						h.js = newJSParser()
						h.jsBegin = p
					}
				case string(tagName) == "style":
					inTag = tagStyle
					styleBegin = p
				case string(tagName) == "%@":
					v, ok := args.get("language")
					if ok && (equalFoldASCII(v, "jscript.encode") || equalFoldASCII(v, "vbscript.encode")) {
						savedNextState = nextState
						nextState = state
						lookForScrenc = false
						state = hLookforScrenc
					}
				case string(tagName) == "a":
					if v, ok := args.get("href"); ok && len(v) > 0 {
						text.str(v)
						text.c(' ')
						textSpaceWritten = true
					}
				case string(tagName) == "img":
					if v, ok := args.get("src"); ok && len(v) > 0 {
						text.str(v)
						text.c(' ')
						textSpaceWritten = true
					}
				}
				args.free()
			case hCharRef:
				if c == '#' {
					value, hex, state = 0, false, hCharRefDecode
					p++
				} else {
					state = hEntityRefDecode
				}
			case hEntityRefDecode:
				switch {
				case c == ';':
					name := string(cstr(entityVal[:entityValLength]))
					if u, ok := entities[name]; ok {
						for _, b := range u16Normalize(u) {
							o2.c(b)
							if nextState == hTagArgVal && tagValLength < htmlStrLength {
								tagVal[tagValLength] = b
								tagValLength++
							}
						}
					} else {
						o2.c('&')
						if nextState == hTagArgVal && tagValLength < htmlStrLength {
							tagVal[tagValLength] = '&'
							tagValLength++
						}
						for _, b := range entityVal[:entityValLength] {
							l := toLower(b)
							o2.c(l)
							if nextState == hTagArgVal && tagValLength < htmlStrLength {
								tagVal[tagValLength] = l
								tagValLength++
							}
						}
						if nextState == hTagArgVal && tagValLength < htmlStrLength {
							tagVal[tagValLength] = ';'
							tagValLength++
						}
						o2.c(';')
					}
					entityValLength = 0
					state, nextState = nextState, hBad
					p++
				case (isAlnum(c) || c == '_' || c == ':' || c == '-') && entityValLength < htmlStrLength:
					entityVal[entityValLength] = c
					entityValLength++
					p++
				default:
					if nextState == hTagArgVal && tagValLength < htmlStrLength {
						tagVal[tagValLength] = '&'
						tagValLength++
					}
					o2.c('&')
					for _, b := range entityVal[:entityValLength] {
						l := toLower(b)
						o2.c(l)
						if nextState == hTagArgVal && tagValLength < htmlStrLength {
							tagVal[tagValLength] = l
							tagValLength++
						}
					}
					state, nextState = nextState, hBad
					entityValLength = 0
				}
			case hCharRefDecode:
				switch {
				case value == 0 && (c == 'x' || c == 'X'):
					hex = true
					p++
				case c == ';':
					if nextState == hTagArgVal && tagValLength < htmlStrLength {
						tagVal[tagValLength] = byte(value)
						tagValLength++
					}
					if value < 0x80 {
						o2.c(toLower(byte(value)))
					} else if b := u16Normalize(uint16(value)); len(b) > 0 {
						o2.str(b)
					}
					state, nextState = nextState, hBad
					p++
				case isDigit(c) || hex && isXDigit(c):
					const maxInt64 = 1<<63 - 1
					if hex && value < maxInt64/16 {
						value *= 16
					} else if value < maxInt64/10 {
						value *= 10
					} else {
						o2.c(byte(value))
						state, nextState = nextState, hBad
						p++
						break
					}
					var inc int64
					if isDigit(c) {
						inc = int64(c - '0')
					} else {
						inc = int64(toLower(c)-'a') + 10
					}
					if value > maxInt64-inc {
						o2.c(byte(value))
						state, nextState = nextState, hBad
						p++
						break
					}
					value += inc
					p++
				default:
					o2.c(byte(value))
					state, nextState = nextState, hBad
				}
			case hLookforScrenc:
				lookForScrenc = true
				if i := bytes.Index(line[p:], []byte("#@~^")); i >= 0 {
					line[p+i], line[p+i+1] = '/', '/'
					screncAt = p + i + 4
				}
				state, nextState = nextState, savedNextState
			case hJSDecode:
				if bytes.HasPrefix(line[p:], []byte("#@~^")) {
					line[p], line[p+1] = '/', '/'
					p += 4
					state, nextState = hJSDecodeLength, hBad
				} else {
					o2.c(toLower(c))
					p++
				}
			case hJSDecodeLength:
				if len(line)-p < 8 {
					state, nextState = hNorm, hBad
					break
				}
				scr = screncState{length: screncLength(line[p:])}
				state, inScrenc, nextState = hJSDecodeDecrypt, true, hBad
				line[p+7] = '\n'
				p += 8
			case hJSDecodeDecrypt:
				line = screncDecode(line, p, &scr)
				if scr.length == 0 {
					state, nextState, inScrenc = hNorm, hBad, false
				} else {
					state, nextState = hNorm, hBad
				}
			case hRFC2397Type:
				switch {
				case c == '\'' || c == '"':
					q := singleQuoted
					if c == '"' {
						q = doubleQuoted
					}
					if !escape && quoted == q {
						p++
						state, tagArgLength, nextState = hSkipWS, 0, hTagArg
					} else {
						if tagValLength < htmlStrLength {
							tagVal[tagValLength] = '"'
							tagValLength++
						}
						p++
					}
				case isSpace(c) || c == '>':
					if quoted == notQuoted {
						state, tagArgLength, nextState = hSkipWS, 0, hTagArg
					} else {
						if tagValLength < htmlStrLength {
							if isSpace(c) {
								tagVal[tagValLength] = ' '
							} else {
								tagVal[tagValLength] = '>'
							}
							tagValLength++
						}
						state, escape, quoted, nextState = hSkipWS, false, notQuoted, hRFC2397Type
						p++
					}
				case c == ',':
					state, escape, nextState = hRFC2397Init, false, hBad
					p++
				default:
					if tagValLength < htmlStrLength {
						tagVal[tagValLength] = toLower(c)
						tagValLength++
					}
					p++
				}
				escape = at(p) == '\\'
			case hRFC2397Init:
				if h.dataURI != nil {
					h.closeData()
					w := h.dataURI()
					h.data, h.dataClose = newFileBuff(w), w
					h.data.str([]byte("From html-normalise\n"))
					h.data.str([]byte("Content-type: "))
					if tagValLength == 0 && tagVal[0] == ';' {
						h.data.str([]byte("text/plain\n"))
					}
					h.data.str(tagVal[:tagValLength])
					h.data.c('\n')
					if bytes.Contains(cstr(tagVal[:tagValLength]), []byte(";base64")) {
						h.data.str([]byte("Content-transfer-encoding: base64\n"))
					}
					h.data.c('\n')
				}
				state, binary = hRFC2397Data, true
			case hRFC2397Data:
				switch {
				case c == '&':
					state, nextState = hCharRef, hRFC2397Data
					p++
				case c == '%':
					length, value = 0, 0
					state, nextState = hEscapeChar, hRFC2397Esc
					p++
				case c == '\'' && !escape && quoted == singleQuoted,
					c == '"' && !escape && quoted == doubleQuoted,
					(isSpace(c) || c == '>') && quoted == notQuoted:
					state = hRFC2397Finish
					p++
				default:
					h.dataC(c)
					p++
				}
				escape = at(p) == '\\'
			case hRFC2397Finish:
				h.closeData()
				state, escape, quoted, nextState, binary = hSkipWS, false, notQuoted, hTagArg, false
			case hRFC2397Esc:
				switch length {
				case 2:
					h.dataC(byte(value))
				case 1:
					h.dataC('%')
					h.dataC(byte(value) + '0')
				default:
					h.dataC('%')
				}
				state = hRFC2397Data
			case hEscapeChar:
				if value < (1<<63-1)/16 {
					value *= 16
				} else {
					state, nextState = nextState, hBad
					p++
					break
				}
				length++
				if isXDigit(c) {
					if isDigit(c) {
						value += int64(c - '0')
					} else {
						value += int64(toLower(c)-'a') + 10
					}
				} else {
					state = nextState
				}
				if length == 2 {
					state = nextState
				}
				p++
			}
			if p > len(line) {
				break chunk
			}
		}
		if h.js != nil {
			h.jsProcess(line, h.jsBegin, -1, p, inTag)
			h.jsBegin = -1
		}
		if inTag == tagStyle {
			end := min(p, len(line))
			if end < styleBegin {
				return
			}
			h.style = append(h.style, line[styleBegin:end]...)
		}
		if lookForScrenc && screncAt >= 0 {
			p, screncAt = screncAt, -1
			state, nextState = hJSDecodeLength, hBad
			continue
		}
		line, p = h.cr.next(), 0
		if inTag == tagStyle {
			styleBegin = 0
		}
		if inScrenc {
			state, nextState = hJSDecodeDecrypt, hBad
		} else if lookForScrenc && screncAt < 0 && state != hLookforScrenc {
			savedNextState = nextState
			nextState = state
			state = hLookforScrenc
		}
		if nextState == state {
			nextState = hBad
		}
	}
	if h.style != nil && h.styleImage != nil {
		cssImages(h.style, h.styleImage)
	}
	// Unfinished entity at the end of the file.
	name := string(cstr(entityVal[:entityValLength]))
	if u, ok := entities[name]; ok {
		for _, b := range u16Normalize(u) {
			o2.c(b)
		}
	} else if entityValLength > 0 {
		o2.c('&')
		for _, b := range entityVal[:entityValLength] {
			o2.c(toLower(b))
		}
	}
}

// outputTag is html_output_tag: "<tag arg="value"…>", values lower-cased.
func outputTag(f *fileBuff, tag []byte, args *tagArgs) {
	f.c('<')
	f.str(tag)
	for i := range args.tag {
		f.c(' ')
		f.str(args.tag[i])
		if args.value[i] != nil {
			f.str([]byte(`="`))
			for _, b := range args.value[i] {
				f.c(toLower(b))
			}
			f.c('"')
		}
	}
	f.c('>')
}

func b64(c byte) int64 { return base64Chars[c] }

// screncLength decodes the length field of an encoded script (the eight
// bytes after "#@~^"), as HTML_JSDECODE_LENGTH does.
func screncLength(p []byte) uint32 {
	var l int64
	if b64(p[0]) >= 0 {
		l = b64(p[0]) << 2
	}
	l += b64(p[1]) >> 4
	l += (b64(p[1]) & 0x0f) << 12
	if v := b64(p[2]) >> 2; v >= 0 {
		l += v << 8
	}
	l += (b64(p[2]) & 0x03) << 22
	if b64(p[3]) >= 0 {
		l += b64(p[3]) << 16
	}
	if b64(p[4]) >= 0 {
		l += (b64(p[4]) << 2) << 24
	}
	if v := b64(p[5]) >> 4; v >= 0 {
		l += v << 24
	}
	return uint32(l)
}

// screncDecode is htmlnorm's screnc_decode on line from index at: the
// encoded script decoded in place, the rest of the line moved up behind
// it (or the line cut where the decoding ran out of it). It returns the
// line, shortened.
func screncDecode(line []byte, at int, s *screncState) []byte {
	get := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	ptr, dst := at, at
	for s.length > 0 && get(ptr) != 0 {
		if get(ptr) == '\n' || get(ptr) == '\r' {
			ptr++
			continue
		}
		if get(ptr) < 0x80 {
			v := decryptTables[tableOrder[s.tablePos]][get(ptr)]
			if v == 0xff {
				ptr++
				s.length--
				switch get(ptr) {
				case 0:
					ptr--
				case 0x21:
					v = 0x3c
				case 0x23:
					v = 0x0d
				case 0x24:
					v = 0x40
				case 0x26:
					v = 0x0a
				case 0x2a:
					v = 0x3e
				}
			}
			s.sum += uint32(v)
			line[dst] = v
			dst++
			s.tablePos = (s.tablePos + 1) % 64
		} else {
			line[dst] = get(ptr)
			dst++
			ptr++
			if ptr >= len(line) {
				break
			}
			line[dst] = line[ptr]
			dst++
		}
		ptr++
		s.length--
	}
	if s.length != 0 {
		return line[:dst]
	}
	if len(line)-ptr >= 12 {
		ptr += 12 // checksum and "^#~@": checked by ClamAV only for its debug log
	}
	if ptr > len(line) {
		ptr = len(line)
	}
	n := copy(line[dst:], line[ptr:])
	return line[:dst+n]
}
