package textnorm

// Tables of ClamAV's JavaScript tokenizer (libclamav/jsparse/js-norm.c and
// its generated keyword and operator sets).

// jsTokType is js-norm's enum token_type, in its order.
type jsTokType int

const (
	tokNone jsTokType = iota
	tokFutureReservedWord
	tokError
	tokIdentifierName
	tokTrue
	tokFalse
	tokNull
	tokBracketOpen
	tokBracketClose
	tokComma
	tokCurlyBraceOpen
	tokCurlyBraceClose
	tokParOpen
	tokParClose
	tokDot
	tokSemicolon
	tokColon
	tokNew
	tokNumericInt
	tokNumericFloat
	tokStringLiteral
	tokRegularExpressionLiteral
	tokThis
	tokPlusplus
	tokMinusminus
	tokDelete
	tokVoid
	tokTypeof
	tokMinus
	tokTilde
	tokExclamation
	tokMultiply
	tokDivide
	tokPercent
	tokPlus
	tokShiftLeft
	tokShiftRight
	tokDoubleshiftRight
	tokLess
	tokGreater
	tokLessequal
	tokGreaterequal
	tokInstanceof
	tokIn
	tokEqualEqual
	tokNotEqual
	tokTripleEqual
	tokNotDoubleequal
	tokAnd
	tokXor
	tokOr
	tokAndAnd
	tokOrOr
	tokQuestionmark
	tokEqual
	tokAssignmentOperatorNoequal
	tokVar
	tokIf
	tokElse
	tokDo
	tokWhile
	tokFor
	tokContinue
	tokBreak
	tokReturn
	tokWith
	tokSwitch
	tokCase
	tokDefault
	tokThrow
	tokTry
	tokCatch
	tokFinally
	tokFunction
	tokUnnormIdentifier
)

var jsCtype = [256]jsClass{ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccWhitespace, ccWhitespace, ccWhitespace, ccNop, ccWhitespace, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccWhitespace, ccOperator, ccDQuote, ccNop, ccIdStart, ccOperator, ccOperator, ccSQuote, ccParOpen, ccParClose, ccOperator, ccOperator, ccComma, ccOperator, ccDot, ccSlash, ccDigit, ccDigit, ccDigit, ccDigit, ccDigit, ccDigit, ccDigit, ccDigit, ccDigit, ccDigit, ccOperator, ccSemiColon, ccOperator, ccOperator, ccOperator, ccOperator, ccNop, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccBracketOpen, ccIdStart, ccBracketClose, ccOperator, ccIdStart, ccNop, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccCurlyOpen, ccOperator, ccCurlyClose, ccOperator, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop}

var jsIDCtype = [256]jsClass{ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccIdStart, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccNop, ccOperator, ccNop, ccNop, ccIdStart, ccNop, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccIdStart, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop, ccNop}

var jsKeywords = map[string]jsTokType{
	"abstract":     tokFutureReservedWord,
	"boolean":      tokFutureReservedWord,
	"break":        tokBreak,
	"byte":         tokFutureReservedWord,
	"case":         tokCase,
	"catch":        tokCatch,
	"char":         tokFutureReservedWord,
	"class":        tokFutureReservedWord,
	"const":        tokFutureReservedWord,
	"continue":     tokContinue,
	"debugger":     tokFutureReservedWord,
	"default":      tokDefault,
	"delete":       tokDelete,
	"do":           tokDo,
	"double":       tokFutureReservedWord,
	"else":         tokElse,
	"enum":         tokFutureReservedWord,
	"export":       tokFutureReservedWord,
	"extends":      tokFutureReservedWord,
	"false":        tokFalse,
	"final":        tokFutureReservedWord,
	"finally":      tokFinally,
	"float":        tokFutureReservedWord,
	"for":          tokFor,
	"function":     tokFunction,
	"goto":         tokFutureReservedWord,
	"if":           tokIf,
	"implements":   tokFutureReservedWord,
	"import":       tokFutureReservedWord,
	"in":           tokIn,
	"instanceof":   tokInstanceof,
	"int":          tokFutureReservedWord,
	"interface":    tokFutureReservedWord,
	"long":         tokFutureReservedWord,
	"native":       tokFutureReservedWord,
	"new":          tokNew,
	"null":         tokNull,
	"package":      tokFutureReservedWord,
	"private":      tokFutureReservedWord,
	"protected":    tokFutureReservedWord,
	"public":       tokFutureReservedWord,
	"return":       tokReturn,
	"short":        tokFutureReservedWord,
	"static":       tokFutureReservedWord,
	"super":        tokFutureReservedWord,
	"switch":       tokSwitch,
	"synchronized": tokFutureReservedWord,
	"this":         tokThis,
	"throw":        tokThrow,
	"throws":       tokFutureReservedWord,
	"transient":    tokFutureReservedWord,
	"true":         tokTrue,
	"try":          tokTry,
	"typeof":       tokTypeof,
	"var":          tokVar,
	"void":         tokVoid,
	"volatile":     tokFutureReservedWord,
	"while":        tokWhile,
	"with":         tokWith,
}

var jsOperators = map[string]jsTokType{
	"!":    tokExclamation,
	"!=":   tokNotEqual,
	"!==":  tokNotDoubleequal,
	"%":    tokPercent,
	"%=":   tokAssignmentOperatorNoequal,
	"&":    tokAnd,
	"&&":   tokAndAnd,
	"&=":   tokAssignmentOperatorNoequal,
	"*":    tokMultiply,
	"*=":   tokAssignmentOperatorNoequal,
	"+":    tokPlus,
	"++":   tokPlusplus,
	"+=":   tokAssignmentOperatorNoequal,
	"-":    tokMinus,
	"--":   tokMinusminus,
	"-=":   tokAssignmentOperatorNoequal,
	"/":    tokDivide,
	"/=":   tokAssignmentOperatorNoequal,
	":":    tokColon,
	"<":    tokLess,
	"<<":   tokShiftLeft,
	"<<=":  tokAssignmentOperatorNoequal,
	"<=":   tokLessequal,
	"=":    tokEqual,
	"==":   tokEqualEqual,
	"===":  tokTripleEqual,
	">":    tokGreater,
	">=":   tokGreaterequal,
	">>":   tokShiftRight,
	">>=":  tokAssignmentOperatorNoequal,
	">>>":  tokDoubleshiftRight,
	">>>=": tokAssignmentOperatorNoequal,
	"?":    tokQuestionmark,
	"^":    tokXor,
	"^=":   tokAssignmentOperatorNoequal,
	"|":    tokOr,
	"|=":   tokAssignmentOperatorNoequal,
	"||":   tokOrOr,
	"~":    tokTilde,
}
