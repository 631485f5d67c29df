# Compiler flags shared by every target of the project: the warning set of ARCHITECTURE.md's house rules,
# warnings as errors when PATTO_WERROR is on, and the sanitizers named in SANITIZE.
set(PATTO_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wcast-qual -Wmissing-prototypes
    -Wstrict-prototypes -Wvla -Wnull-dereference -Wundef -Wimplicit-fallthrough)
add_compile_options(${PATTO_WARNINGS})
if(PATTO_WERROR)
    add_compile_options(-Werror)
endif()
if(SANITIZE)
    add_compile_options(-fsanitize=${SANITIZE} -fno-sanitize-recover=undefined
                        -fno-omit-frame-pointer)
    add_link_options(-fsanitize=${SANITIZE})
endif()
