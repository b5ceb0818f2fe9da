package textnorm

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The JavaScript normalizer: a port of ClamAV 1.4's libclamav/jsparse/
// js-norm.c, which htmlnorm feeds the text of each <script> of a page,
// chunk by chunk, and which appends "<script>…</script>" to the page's
// "javascript" output: the script tokenized, identifiers declared in it
// renamed n000, n001…, strings with their escapes decoded, everything
// lower-cased, strings concatenated with + folded, unescape("…") decoded,
// and the common packers (Dean Edwards' p,a,c,k,e,r; dF(); eval("…"))
// unpacked and normalized in turn.

type jsClass int

const (
	ccWhitespace jsClass = iota
	ccSlash
	ccOperator
	ccDQuote
	ccSQuote
	ccDigit
	ccIdStart
	ccBracketOpen
	ccBracketClose
	ccComma
	ccCurlyOpen
	ccCurlyClose
	ccParOpen
	ccParClose
	ccDot
	ccSemiColon
	ccNop
)

var jsSpecial = map[jsClass]struct {
	tok jsTokType
	s   string
}{
	ccBracketOpen: {tokBracketOpen, "["}, ccBracketClose: {tokBracketClose, "]"},
	ccComma: {tokComma, ","}, ccCurlyOpen: {tokCurlyBraceOpen, "{"}, ccCurlyClose: {tokCurlyBraceClose, "}"},
	ccParOpen: {tokParOpen, "("}, ccParClose: {tokParClose, ")"}, ccDot: {tokDot, "."}, ccSemiColon: {tokSemicolon, ";"},
}

type jsValType int

const (
	vtUndefined jsValType = iota
	vtCstring
	vtString
	vtScope
	vtDval
	vtIval
)

// jsToken is js-norm's yystype. A string value may be absent (nil),
// which C's NULL is.
type jsToken struct {
	typ   jsTokType
	vt    jsValType
	str   *[]byte
	scope *jsScope
	dval  float64
	ival  int64
}

func (t *jsToken) setStr(vt jsValType, s *[]byte) { t.vt, t.str = vt, s }

// cstring is TOKEN_GET(token, cstring): a string or cstring value, else nil.
func (t *jsToken) cstring() *[]byte {
	if t.vt == vtCstring || t.vt == vtString {
		return t.str
	}
	return nil
}

// string_ is TOKEN_GET(token, string): only a string value.
func (t *jsToken) string_() *[]byte {
	if t.vt == vtString {
		return t.str
	}
	return nil
}

func (t *jsToken) getIval() int64 {
	if t.vt == vtIval {
		return t.ival
	}
	return -1
}

func sp(s string) *[]byte {
	b := []byte(s)
	return &b
}

type fsmState int

const (
	fsmBase fsmState = iota
	fsmInsideVar
	fsmInsideInitializer
	fsmWaitFunctionName
	fsmWaitParameterList
	fsmInsideFunctionDecl
)

const noID = math.MaxUint64

type jsScope struct {
	ids       map[string]uint64
	parent    *jsScope
	fsm       fsmState
	lastToken jsTokType
	brackets  uint
	blocks    uint
}

type scanState int

const (
	ssInitial scanState = iota
	ssSinglelineComment
	ssMultilineComment
	ssNumber
	ssDoubleQString
	ssSingleQString
	ssIdentifier
	ssDummy
)

// jsScanner is js-norm's hand-written lexer state.
type jsScanner struct {
	in        []byte
	pos       int
	state     scanState
	lastpos   int
	lastState scanState
	buf       []byte // text_buffer; nil data is C's NULL
	yytext    []byte // set for a finished string, else nil
	yylen     int
}

type jsParser struct {
	varUniq       uint64
	syntaxErrors  uint64
	global        *jsScope
	current       *jsScope
	scanner       *jsScanner
	tokens        []jsToken
	rec           int
	scannerClosed bool
}

func newJSParser() *jsParser {
	p := &jsParser{scanner: &jsScanner{}}
	p.scopeNew()
	p.global = p.current
	return p
}

func (p *jsParser) scopeNew() *jsScope {
	s := &jsScope{ids: map[string]uint64{}, parent: p.current, fsm: fsmBase}
	p.current = s
	return s
}

func (p *jsParser) scopeDeclare(s *jsScope, name string) *[]byte {
	s.ids[name] = p.varUniq
	p.varUniq++
	return sp(name)
}

func scopeUse(s *jsScope, name string) *[]byte {
	if _, ok := s.ids[name]; !ok {
		s.ids[name] = noID
	}
	return sp(name)
}

func scopeLookup(s *jsScope, name string) uint64 {
	for ; s != nil; s = s.parent {
		if id, ok := s.ids[name]; ok && id != noID {
			return id
		}
	}
	return noID
}

func isAlnumC(c byte) bool { return c < 0x80 && isAlnum(c) }

func hex2int(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func nonneg(v int) int {
	if v < 0 {
		return 0
	}
	return v
}

func outputUTF8(u uint16) []byte {
	switch {
	case u == 0:
		return []byte{1}
	case u < 0x80:
		return []byte{byte(u)}
	case u < 0x800:
		return []byte{0xc0 | byte(u>>6), 0x80 | byte(u&0x3f)}
	}
	return []byte{0xe0 | byte(u>>12), 0x80 | byte(u>>6&0x3f), 0x80 | byte(u&0x3f)}
}

// appendNormalize is str.c's cli_textbuffer_append_normalize: a string's
// escapes decoded, NUL written as 0x01.
func appendNormalize(buf, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case '0':
				c = 0
			case 'b':
				c = 8
			case 't':
				c = 9
			case 'n':
				c = 10
			case 'v':
				c = 11
			case 'f':
				c = 12
			case 'r':
				c = 13
			case 'x':
				if i+2 < len(s) {
					c = byte(nonneg(hex2int(s[i+1]))<<4 | hex2int(s[i+2]))
				}
				i += 2
			case 'u':
				if i+4 < len(s) {
					u := uint16(nonneg(hex2int(s[i+1]))<<12 | nonneg(hex2int(s[i+2]))<<8 |
						nonneg(hex2int(s[i+3]))<<4 | hex2int(s[i+4]))
					buf = append(buf, outputUTF8(u)...)
					i += 4
					continue
				}
			default:
				c = s[i]
			}
		}
		if c == 0 {
			c = 1
		}
		buf = append(buf, c)
	}
	return buf
}

// unescape is str.c's cli_unescape, JavaScript's unescape().
func unescape(s string) string {
	s = string(cstr([]byte(s)))
	var r []byte
	for k := 0; k < len(s); k++ {
		c := s[k]
		if s[k] == '%' {
			if k+5 >= len(s) || s[k+1] != 'u' || hex2int(s[k+2]) < 0 || hex2int(s[k+3]) < 0 ||
				hex2int(s[k+4]) < 0 || hex2int(s[k+5]) < 0 {
				if k+2 < len(s) && hex2int(s[k+1]) >= 0 && hex2int(s[k+2]) >= 0 {
					c = byte(hex2int(s[k+1])<<4 | hex2int(s[k+2]))
					k += 2
				}
			} else {
				u := uint16(hex2int(s[k+2])<<12 | hex2int(s[k+3])<<8 | hex2int(s[k+4])<<4 | hex2int(s[k+5]))
				r = append(r, outputUTF8(u)...)
				k += 5
				continue
			}
		}
		if c == 0 {
			c = 1
		}
		r = append(r, c)
	}
	return string(r)
}

// --- the lexer ---

func (sc *jsScanner) scanBytes(b []byte) {
	sc.in, sc.pos, sc.lastpos, sc.lastState = b, 0, -1, ssDummy
}

func (sc *jsScanner) text() []byte {
	if sc.yytext != nil {
		return sc.yytext
	}
	return cstr(sc.buf)
}

func (sc *jsScanner) leng() int {
	if sc.yylen != 0 {
		return sc.yylen
	}
	if len(sc.buf) > 0 {
		return len(sc.buf) - 1
	}
	return 0
}

func (sc *jsScanner) done() []byte {
	str := sc.buf
	if str == nil {
		str = []byte{}
	}
	sc.yytext = str
	sc.yylen = len(str) - 1
	sc.buf = nil
	return str
}

func (sc *jsScanner) parseString(t *jsToken, q byte, to scanState) jsTokType {
	start := sc.pos
	end := -1
	from := start
	for {
		i := bytes.IndexByte(sc.in[from:], q)
		if i < 0 {
			end = -1
			break
		}
		end = from + i
		if end > start && sc.in[end-1] == '\\' {
			from = end + 1
			continue
		}
		break
	}
	var n int
	if end >= start {
		n = end - start
	} else {
		n = len(sc.in) - sc.pos
	}
	if sc.buf == nil {
		sc.buf = []byte{}
	}
	sc.buf = appendNormalize(sc.buf, sc.in[start:start+n])
	if end >= 0 {
		sc.pos += n + 1
		sc.buf = append(sc.buf, 0)
		str := cstr(sc.done())
		t.setStr(vtString, &str)
		sc.state = ssInitial
		return tokStringLiteral
	}
	sc.pos += n
	sc.state = to
	return tokNone
}

func (sc *jsScanner) parseNumber(t *jsToken) jsTokType {
	isFloat := false
	for sc.pos < len(sc.in) {
		c := sc.in[sc.pos]
		sc.pos++
		if isDigit(c) {
			sc.buf = append(sc.buf, c)
			continue
		}
		if c == '.' && !isFloat {
			isFloat = true
			sc.buf = append(sc.buf, '.')
			continue
		}
		if (c == 'e' || c == 'E') && isFloat {
			sc.buf = append(sc.buf, c)
			if sc.pos < len(sc.in) {
				c = sc.in[sc.pos]
				sc.pos++
				if c == '+' || c == '-' || isDigit(c) {
					sc.buf = append(sc.buf, c)
					continue
				}
			}
		}
		sc.pos--
		sc.buf = append(sc.buf, 0)
		sc.state = ssInitial
		s := string(cstr(sc.buf))
		if isFloat {
			t.vt, t.dval = vtDval, atof(s)
			return tokNumericFloat
		}
		t.vt, t.ival = vtIval, int64(atoi(s))
		return tokNumericInt
	}
	sc.state = ssNumber
	return tokNone
}

// atoi is glibc's: strtol, saturating, then cut to an int.
func atoi(s string) int32 {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	j := i
	if j < len(s) && (s[j] == '+' || s[j] == '-') {
		j++
	}
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	v, err := strconv.ParseInt(s[i:j], 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			if strings.HasPrefix(s[i:j], "-") {
				v = math.MinInt64
			} else {
				v = math.MaxInt64
			}
		} else {
			v = 0
		}
	}
	return int32(v)
}

// atof is strtod on the longest number prefix (as atof reads it).
func atof(s string) float64 {
	for n := len(s); n > 0; n-- {
		if v, err := strconv.ParseFloat(s[:n], 64); err == nil {
			return v
		} else if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return v
		}
	}
	return 0
}

func (sc *jsScanner) parseID(t *jsToken) jsTokType {
	sc.state = ssInitial
	for sc.pos < len(sc.in) {
		c := sc.in[sc.pos]
		sc.pos++
		switch jsIDCtype[c] {
		case ccIdStart:
			sc.buf = append(sc.buf, c)
			continue
		case ccOperator: // only the backslash
			if sc.pos < len(sc.in) {
				next := sc.in[sc.pos]
				sc.pos++
				if next == 'u' {
					sc.buf = append(sc.buf, c)
					continue
				}
			}
			if sc.pos == len(sc.in) {
				sc.pos++
			}
		}
		sc.state = ssInitial
		sc.buf = append(sc.buf, 0)
		sc.pos--
		word := string(cstr(sc.buf))
		if kw, ok := jsKeywords[word]; ok {
			t.setStr(vtCstring, sp(word))
			return kw
		}
		t.setStr(vtCstring, nil)
		return tokIdentifierName
	}
	sc.state = ssIdentifier
	return tokNone
}

func (sc *jsScanner) parseOperator(t *jsToken) jsTokType {
	for n := min(5, len(sc.in)-sc.pos); n > 0; n-- {
		if op, ok := jsOperators[string(sc.in[sc.pos:sc.pos+n])]; ok {
			t.setStr(vtCstring, sp(string(sc.in[sc.pos:sc.pos+n])))
			sc.pos += n
			return op
		}
	}
	sc.pos++
	t.setStr(vtCstring, nil)
	return tokError
}

// lex is yylex: the next token of the buffer, or tokNone at its end.
func (sc *jsScanner) lex(t *jsToken) jsTokType {
	sc.yytext, sc.yylen = nil, 0
	if sc.pos == sc.lastpos && sc.lastState == sc.state {
		sc.pos++ // "infloop detected, skipping character"
	}
	sc.lastpos, sc.lastState = sc.pos, sc.state
	for sc.pos < len(sc.in) {
		switch sc.state {
		case ssInitial:
			if sc.buf != nil {
				sc.buf = sc.buf[:0]
			}
			c := sc.in[sc.pos]
			sc.pos++
			switch cls := jsCtype[c]; cls {
			case ccWhitespace, ccNop:
				continue
			case ccSlash:
				if sc.pos < len(sc.in) {
					switch sc.in[sc.pos] {
					case '*':
						sc.state = ssMultilineComment
						sc.pos++
						continue
					case '/':
						sc.state = ssSinglelineComment
						sc.pos++
						continue
					}
				}
				sc.pos--
				return sc.parseOperator(t)
			case ccOperator:
				sc.pos--
				return sc.parseOperator(t)
			case ccDQuote:
				return sc.parseString(t, '"', ssDoubleQString)
			case ccSQuote:
				return sc.parseString(t, '\'', ssSingleQString)
			case ccDigit:
				sc.pos--
				return sc.parseNumber(t)
			case ccIdStart:
				sc.pos--
				return sc.parseID(t)
			default:
				special := jsSpecial[cls]
				t.setStr(vtCstring, sp(special.s))
				return special.tok
			}
		case ssDoubleQString:
			return sc.parseString(t, '"', ssDoubleQString)
		case ssSingleQString:
			return sc.parseString(t, '\'', ssSingleQString)
		case ssIdentifier:
			return sc.parseID(t)
		case ssMultilineComment:
			for sc.pos+1 < len(sc.in) {
				if sc.in[sc.pos] == '*' && sc.in[sc.pos+1] == '/' {
					sc.state = ssInitial
					sc.pos++
					break
				}
				sc.pos++
			}
			sc.pos++
		case ssNumber:
			return sc.parseNumber(t)
		case ssSinglelineComment:
			for sc.pos < len(sc.in) && sc.in[sc.pos] != '\n' && sc.in[sc.pos] != ' ' {
				sc.pos++
			}
			sc.state = ssInitial
		}
	}
	return tokNone
}

// --- the parser ---

// processBuffer is cli_js_process_buffer: tokenize b, track scopes and
// declarations, fold string concatenations.
func (p *jsParser) processBuffer(b []byte) {
	if p.global == nil || p.scannerClosed {
		return
	}
	current := p.current
	sc := p.scanner
	sc.scanBytes(b)
	for {
		var val jsToken
		yv := sc.lex(&val)
		if yv == tokNone {
			return
		}
		val.typ = yv
		switch yv {
		case tokVar:
			current.fsm = fsmInsideVar
		case tokIdentifierName:
			text := string(sc.text()[:min(sc.leng(), len(sc.text()))])
			if current.lastToken == tokDot {
				val.setStr(vtString, sp(text))
				val.typ = tokUnnormIdentifier
			} else {
				switch current.fsm {
				case fsmWaitParameterList:
					p.syntaxErrors++
					fallthrough
				case fsmBase, fsmInsideInitializer:
					val.setStr(vtCstring, scopeUse(current, text))
				case fsmInsideVar, fsmInsideFunctionDecl:
					val.setStr(vtCstring, p.scopeDeclare(current, text))
					current.fsm = fsmInsideInitializer
					current.brackets = 0
				case fsmWaitFunctionName:
					val.setStr(vtCstring, p.scopeDeclare(current, text))
					current.fsm = fsmWaitParameterList
				}
			}
		case tokParOpen:
			if current.fsm == fsmWaitFunctionName || current.fsm == fsmWaitParameterList {
				current.fsm = fsmInsideFunctionDecl
			}
		case tokParClose:
			switch current.fsm {
			case fsmWaitFunctionName:
				p.syntaxErrors++
			case fsmWaitParameterList:
				current.fsm = fsmBase
			}
		case tokCurlyBraceOpen:
			switch current.fsm {
			case fsmWaitFunctionName, fsmWaitParameterList, fsmInsideFunctionDecl:
				current.fsm = fsmBase
				p.syntaxErrors++
			case fsmInsideVar, fsmInsideInitializer:
				p.syntaxErrors++
			}
			current.blocks++
		case tokCurlyBraceClose:
			if current.blocks > 0 {
				current.blocks--
			} else {
				p.syntaxErrors++
			}
			if current.blocks == 0 {
				if current.parent != nil {
					val.setStr(vtCstring, sp("}"))
					p.tokens = append(p.tokens, val)
					val = jsToken{typ: tokFunction, vt: vtScope}
					p.current = current.parent
					current = current.parent
				} else {
					p.syntaxErrors++
				}
			}
		case tokBracketOpen:
			current.brackets++
		case tokBracketClose:
			if current.brackets > 0 {
				current.brackets--
			} else {
				p.syntaxErrors++
			}
		case tokComma:
			if current.fsm == fsmInsideInitializer && current.brackets == 0 && current.blocks == 0 {
				current.fsm = fsmInsideVar
			}
		case tokSemicolon:
			if current.brackets == 0 && current.blocks == 0 {
				current.fsm = fsmBase
			}
		case tokFunction:
			current = p.scopeNew()
			current.fsm = fsmWaitFunctionName
			val.vt, val.scope = vtScope, p.current
		case tokStringLiteral:
			if n := len(p.tokens); n > 1 && p.tokens[n-1].typ == tokPlus && p.tokens[n-2].typ == tokStringLiteral {
				prev := &p.tokens[n-2]
				text := sc.text()
				if l := sc.leng(); l < len(text) {
					text = text[:l]
				}
				if ps := prev.string_(); ps != nil {
					*ps = append(*ps, cstr(text)...)
				} else {
					b := append([]byte{}, cstr(text)...)
					prev.setStr(vtString, &b)
				}
				p.tokens = p.tokens[:n-1]
				continue
			}
		}
		p.tokens = append(p.tokens, val)
		current.lastToken = yv
	}
}

// parseDone is cli_js_parse_done: close an unfinished string and the
// open parentheses, then run the folders and decoders.
func (p *jsParser) parseDone() {
	var end byte
	switch p.scanner.state {
	case ssDoubleQString:
		end = '"'
	case ssSingleQString:
		end = '\''
	}
	if end != 0 {
		p.processBuffer([]byte{end})
	}
	balance := 0
	for i := range p.tokens {
		switch {
		case p.tokens[i].typ == tokParOpen:
			balance++
		case p.tokens[i].typ == tokParClose && balance > 0:
			balance--
		}
	}
	for ; balance > 0; balance-- {
		p.tokens = append(p.tokens, jsToken{typ: tokParClose, vt: vtCstring, str: sp(")")})
	}
	p.runFolders()
	p.runDecoders()
	p.scannerClosed = true
}

// runFolders is run_folders: unescape("…") becomes the string it gives.
// ClamAV replaces the four tokens in place, one at a time; rewriting the
// list in one pass gives the same tokens (the test looks only forward).
func (p *jsParser) runFolders() {
	old := p.tokens
	out := make([]jsToken, 0, len(old))
	for j := 0; j < len(old); {
		cs := old[j].cstring()
		if j+2 < len(old) && old[j].typ == tokIdentifierName && cs != nil && string(*cs) == "unescape" &&
			old[j+1].typ == tokParOpen && old[j+2].typ == tokStringLiteral && j+4 <= len(old) {
			var s string
			if v := old[j+2].cstring(); v != nil {
				s = string(*v)
			}
			out = append(out, jsToken{typ: tokStringLiteral, vt: vtString, str: sp(unescape(s))})
			j += 4
			continue
		}
		out = append(out, old[j])
		j++
	}
	p.tokens = out
}

// replaceRange is replace_token_range; false for a range outside the tokens.
func replaceRange(dst *[]jsToken, start, end int, with []jsToken) bool {
	d := *dst
	if start >= len(d) || end > len(d) || start < 0 || end < start {
		return false
	}
	n := len(d) - (end - start) + len(with)
	if n > len(d) {
		d = append(d, make([]jsToken, n-len(d))...)
	}
	copy(d[start+len(with):], (*dst)[end:len(*dst)])
	copy(d[start:], with)
	*dst = d[:n]
	return true
}

type decodeResult struct {
	txt      []byte
	hasTxt   bool
	begin    int
	end      int
	appendTo bool
}

// matchParameters is js-norm's match_parameters, with its habit of
// checking only the first half of the names.
func matchParameters(tokens []jsToken, at, numTokens int, names []string) bool {
	get := func(i int) *jsToken {
		if at+i < len(tokens) {
			return &tokens[at+i]
		}
		return &jsToken{}
	}
	idx, ni, n := 1, 0, len(names)
	if get(0).typ != tokParOpen || idx >= numTokens {
		return false
	}
	for ni < n {
		n--
		v := get(idx).cstring()
		if v == nil {
			return false
		}
		if idx >= numTokens || get(idx).typ != tokIdentifierName {
			return false
		}
		idx++
		if string(*v) != names[ni] {
			return false
		}
		ni++
		if idx >= numTokens || (n > 0 && get(idx).typ != tokComma) || (n == 0 && get(idx).typ != tokParClose) {
			return false
		}
		idx++
	}
	return true
}

func decodeDE(params []*jsToken, out []byte) []byte {
	pp := params[0].cstring()
	a := params[1].getIval()
	kp := params[3].string_()
	if pp == nil || kp == nil {
		return out
	}
	words := strings.Split(string(cstr(*kp)), "|")
	ps := cstr(*pp)
	i := 0
	for {
		for i < len(ps) && !isAlnumC(ps[i]) {
			if ps[i] == '\\' && i+1 < len(ps) && (ps[i+1] == '\'' || ps[i+1] == '"') {
				i++
			} else {
				out = append(out, ps[i])
				i++
			}
		}
		if i >= len(ps) {
			break
		}
		var val uint32
		o := i
		for i < len(ps) && isAlnumC(ps[i]) {
			v := ps[i]
			i++
			var x uint32
			switch {
			case v >= 'a':
				x = 10 + uint32(v-'a')
			case v >= 'A':
				x = 36 + uint32(v-'A')
			default:
				x = uint32(v - '0')
			}
			val = uint32(uint64(val)*uint64(a) + uint64(x))
		}
		if int(val) >= len(words) || val >= uint32(len(words)) || words[val] == "" {
			out = append(out, ps[o:i]...)
		} else {
			out = append(out, words[val]...)
		}
		if i >= len(ps) {
			break
		}
	}
	return out
}

func (p *jsParser) handleDE(start int, name *[]byte, res *decodeResult) {
	tokens := p.tokens
	cnt := len(tokens)
	nesting := 1
	i := start
	for ; i < cnt; i++ {
		if tokens[i].typ == tokFunction {
			if tokens[i].vt == vtScope && tokens[i].scope != nil {
				nesting++
			} else {
				nesting--
			}
			if nesting == 0 {
				break
			}
		}
	}
	if nesting != 0 {
		return
	}
	first, last := -1, -1
	const nparams = 6
	collect := func(i int) int {
		params := make([]*jsToken, 0, nparams)
		idx := make([]int, 0, nparams)
		j := 0
		for ; j < nparams && i < cnt; j++ {
			params = append(params, &tokens[i])
			idx = append(idx, i)
			i++
			if j != nparams-1 {
				for i < cnt && tokens[i].typ != tokComma {
					i++
				}
			} else {
				for i < cnt && tokens[i].typ != tokParClose {
					i++
				}
			}
			i++
		}
		if j == nparams {
			if first < 0 {
				first = idx[0]
			}
			last = idx[nparams-1]
			res.txt = decodeDE(params, res.txt)
			res.hasTxt = true
		}
		return i
	}
	if name != nil {
		for ; i+2 < cnt; i++ {
			v := tokens[i].cstring()
			if tokens[i].typ == tokIdentifierName && v != nil && bytes.Equal(*v, *name) && tokens[i+1].typ == tokParOpen {
				i = collect(i + 2) // and the loop's i++ skips one more, as ClamAV's does
			}
		}
	} else {
		for i < cnt && tokens[i].typ != tokParOpen {
			i++
		}
		i++
		if i >= cnt {
			return
		}
		collect(i)
	}
	if first >= 0 && last >= 0 {
		res.begin = first
		res.end = last + 1
		if res.end+2 < cnt && tokens[res.end].typ == tokBracketOpen && tokens[res.end+1].typ == tokBracketClose &&
			tokens[res.end+2].typ == tokParClose {
			res.end += 3
		} else if res.end < cnt {
			res.end++
		}
	}
}

func (p *jsParser) handleDF(start int, res *decodeResult) {
	if p.tokens[start].typ != tokStringLiteral {
		return
	}
	sptr := p.tokens[start].string_()
	if sptr == nil {
		return
	}
	str := append([]byte{}, cstr(*sptr)...)
	if len(str) == 0 {
		return
	}
	clast := str[len(str)-1] - '0'
	str = str[:len(str)-1]
	p.tokens[start].str = &str
	s1 := []byte(unescape(string(str)))
	for i := range s1 {
		s1[i] -= clast
	}
	r := unescape(string(cstr(s1)))
	res.begin, res.end = start-2, start+2
	res.txt, res.hasTxt = []byte(r), true
	res.appendTo = true
}

func (p *jsParser) handleEval(start int, res *decodeResult) {
	s := p.tokens[start].string_()
	if start+1 >= len(p.tokens) {
		return
	}
	if s != nil && p.tokens[start+1].typ == tokParClose {
		p.tokens[start].setStr(vtString, nil)
		res.txt, res.hasTxt = append([]byte{}, cstr(*s)...), true
		res.begin, res.end = start-2, start+2
	}
}

func (p *jsParser) updateScope(t *jsToken) bool {
	if t.typ == tokFunction {
		if t.vt == vtScope && t.scope != nil {
			p.current = t.scope
		} else {
			if p.current.parent != nil {
				p.current = p.current.parent
			}
			return false
		}
	}
	return true
}

func (p *jsParser) runDecoders() {
	for i := 0; i < len(p.tokens); i++ {
		cs := p.tokens[i].cstring()
		var res decodeResult
		cnt := len(p.tokens)
		switch {
		case p.tokens[i].typ == tokFunction && i+13 < cnt:
			var name *[]byte
			i++
			if p.tokens[i].typ == tokIdentifierName {
				name = p.tokens[i].cstring()
				i++
			}
			if matchParameters(p.tokens, i, cnt, []string{"p", "a", "c", "k", "e", "r"}) ||
				matchParameters(p.tokens, i, cnt, []string{"p", "a", "c", "k", "e", "d"}) {
				p.handleDE(i, name, &res)
			}
		case i+2 < cnt && p.tokens[i].typ == tokIdentifierName && cs != nil && string(*cs) == "dF" && p.tokens[i+1].typ == tokParOpen:
			p.handleDF(i+2, &res)
		case i+2 < cnt && p.tokens[i].typ == tokIdentifierName && cs != nil && string(*cs) == "eval" && p.tokens[i+1].typ == tokParOpen:
			p.handleEval(i+2, &res)
		}
		if res.end > res.begin {
			if res.end < len(p.tokens) && p.tokens[res.end].typ == tokSemicolon {
				res.end++
			}
			parent := p.tokens
			p.tokens = nil
			p.rec++
			if p.rec <= 16 {
				p.processBuffer(res.txt)
				p.rec--
			}
			nested := p.tokens
			if !res.appendTo {
				replaceRange(&parent, res.begin, res.end, nested)
			} else {
				replaceRange(&parent, res.begin, res.end, nil)
				parent = append(parent, nested...)
			}
			p.tokens = parent
		}
		if i < len(p.tokens) {
			p.updateScope(&p.tokens[i])
		}
	}
}

// jsOut is js-norm's output buffer: 64 KiB, written when full; the final
// "</script>" check sees only what is still buffered.
type jsOut struct {
	w   io.Writer
	buf []byte
	err error
}

func (o *jsOut) write(b []byte) {
	if o.err == nil {
		_, o.err = o.w.Write(b)
	}
}

func (o *jsOut) c(c byte) {
	if len(o.buf) >= 65536 {
		o.write(o.buf)
		o.buf = o.buf[:0]
	}
	o.buf = append(o.buf, c)
}

func (o *jsOut) s(s string) {
	for i := 0; i < len(s) && s[i] != 0; i++ {
		c := s[i]
		if isSpace(c) {
			c = ' '
		} else {
			c = toLower(c)
		}
		o.buf = append(o.buf, c)
		if len(o.buf) == 65536 {
			o.write(o.buf)
			o.buf = o.buf[:0]
		}
	}
}

func (o *jsOut) space(last, cur byte) {
	if isAlnumC(last) && isAlnumC(cur) {
		o.c(' ')
	}
}

func (p *jsParser) outputToken(t *jsToken, o *jsOut, last byte) byte {
	s := t.cstring()
	switch t.typ {
	case tokStringLiteral:
		o.space(last, '"')
		o.c('"')
		if s != nil {
			o.s(string(*s))
		}
		o.c('"')
		return '"'
	case tokNumericInt:
		o.space(last, '0')
		o.s(strconv.FormatInt(t.getIval(), 10))
		return '0'
	case tokNumericFloat:
		o.space(last, '0')
		d := -1.0
		if t.vt == vtDval {
			d = t.dval
		}
		o.s(formatG(d))
		return '0'
	case tokIdentifierName:
		o.space(last, 'a')
		if s != nil {
			if id := scopeLookup(p.current, string(*s)); id == noID {
				o.s(string(*s))
			} else {
				o.s(fmt.Sprintf("n%03d", id))
			}
		}
		return 'a'
	case tokFunction:
		o.space(last, 'a')
		o.s("function")
		return 'a'
	}
	if s != nil {
		str := string(cstr(*s))
		if len(str) == 0 {
			o.space(last, 0)
			return 0
		}
		o.space(last, str[0])
		o.s(str)
		return str[len(str)-1]
	}
	return 0
}

// formatG is printf's %g.
func formatG(d float64) string {
	switch {
	case math.IsInf(d, 1):
		return "inf"
	case math.IsInf(d, -1):
		return "-inf"
	case math.IsNaN(d):
		return "nan"
	}
	if d == 0 {
		if math.Signbit(d) {
			return "-0"
		}
		return "0"
	}
	exp := int(math.Floor(math.Log10(math.Abs(d))))
	// Round to 6 significant digits first: that may change the exponent.
	r := strconv.FormatFloat(d, 'e', 5, 64)
	if e, err := strconv.Atoi(r[strings.IndexByte(r, 'e')+1:]); err == nil {
		exp = e
	}
	if exp < -4 || exp >= 6 {
		m, e, _ := strings.Cut(r, "e")
		if strings.Contains(m, ".") {
			m = strings.TrimRight(strings.TrimRight(m, "0"), ".")
		}
		sign := "+"
		if strings.HasPrefix(e, "-") {
			sign, e = "-", e[1:]
		} else {
			e = strings.TrimPrefix(e, "+")
		}
		if len(e) < 2 {
			e = "0" + e
		}
		return m + "e" + sign + e
	}
	f := strconv.FormatFloat(d, 'f', 5-exp, 64)
	if strings.Contains(f, ".") {
		f = strings.TrimRight(strings.TrimRight(f, "0"), ".")
	}
	return f
}

// output is cli_js_output: "<script>", the tokens, "</script>" unless the
// buffer already ends with it; a newline first if something was output
// before (first is false).
func (p *jsParser) output(w io.Writer, first bool) error {
	o := &jsOut{w: w}
	if !first {
		o.c('\n')
	}
	o.s("<script>")
	p.current = p.global
	var last byte
	for i := range p.tokens {
		if p.updateScope(&p.tokens[i]) {
			last = p.outputToken(&p.tokens[i], o, last)
		}
	}
	if len(o.buf) < 9 || string(o.buf[len(o.buf)-9:]) != "</script>" {
		o.s("</script>")
	}
	o.write(o.buf)
	return o.err
}
