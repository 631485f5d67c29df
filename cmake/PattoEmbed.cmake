# patto_embed(OUTPUT c_file INPUT data_file SYMBOL name)
# Generates c_file defining `const unsigned char name[]` (the bytes of data_file, plus a NUL
# not counted) and `const size_t name_len`, regenerated when data_file changes. Used to build
# the shipped schema into the programs that need it (pattod, patto).
function(patto_embed)
    cmake_parse_arguments(E "" "OUTPUT;INPUT;SYMBOL" "" ${ARGN})
    add_custom_command(
        OUTPUT ${E_OUTPUT}
        COMMAND ${CMAKE_COMMAND} -DINPUT=${E_INPUT} -DOUTPUT=${E_OUTPUT} -DSYMBOL=${E_SYMBOL}
                -P ${PROJECT_SOURCE_DIR}/cmake/PattoEmbedRun.cmake
        DEPENDS ${E_INPUT} ${PROJECT_SOURCE_DIR}/cmake/PattoEmbedRun.cmake
        COMMENT "Embedding ${E_INPUT}"
        VERBATIM)
endfunction()
