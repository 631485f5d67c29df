# Script mode helper of patto_embed: writes OUTPUT from INPUT as a C byte array SYMBOL.
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n    " bytes "${bytes}")
file(WRITE ${OUTPUT} "/* Generated from ${INPUT} by cmake/PattoEmbedRun.cmake. Do not edit. */\n"
    "#include <stddef.h>\n"
    "extern const unsigned char ${SYMBOL}[];\n"
    "extern const size_t ${SYMBOL}_len;\n"
    "const unsigned char ${SYMBOL}[] = {\n    ${bytes}0x00\n};\n"
    "const size_t ${SYMBOL}_len = ${len};\n")
