"""Protocol strings of HumanEvalComm and of the ClarifyCoder paper's training code, byte for byte.

These are facts of the benchmark and of the paper, not wording of ours: each is copied from the
file named beside it (`git show <commit>:<path>`) and must not be edited. The HumanEvalComm
strings are those of commit 87c66711cb55777366219913fdddc91563a2dab2 of
jie-jw-wu/human-eval-comm, the commit that holds the authors' logs of deepseek-coder-6.7b-instruct
behind the published table (`../shared/data/humanevalcomm/logs`); they are unchanged at the later
HEAD e05111b3, except that HEAD reads the round-1 text from config.yaml as "...: \\n {problem}" (one
more space before the problem) and formats the original-prompt text with `.format(problem=...)`,
which has no {problem} field, so that HEAD sends the original prompts without their problem.
"""

# generate_response.py, PROMPT_START_3_v2 (config.yaml phase1_prompts.prompt1 at HEAD): the
# round-1 instruction of every modified prompt, directly followed by the problem.
# The kinds of synthesized rows (ClarifyCoder): the original problem and its three rewrites.
REWRITE_TYPES = ("ambiguous", "inconsistent", "incomplete")
ROW_TYPES = ("original", *REWRITE_TYPES)
# HumanEvalComm's prompts: the original, and the modified categories (1a ambiguous, 1c
# inconsistent, 1p incomplete, and their combinations), as its dataset names them (`prompt1a`, ...).
ORIGINAL = "original"
HUMANEVALCOMM_CATEGORIES = ("1a", "1c", "1p", "2ac", "2ap", "2cp", "3acp")

ASK_OR_CODE_INSTRUCTION = (
    "You are an expert software developer who writes high quality code. With below "
    "information, please either generate Python3 code (Respond directly with code "
    "only with markdown), or ask clarifying questions: \n"
)

# generate_response.py, ORIGINAL_PROMPT_START_0: the instruction of the unmodified prompts
# (`input_prompt == 'prompt'`, the HumanEval column), one round, code only.
CODE_ONLY_INSTRUCTION = (
    "You are an expert software developer who writes high quality code. With below "
    "information, please generate Python3 code (Respond directly with code only with "
    "markdown): \n"
)

# generate_response.py, PROMPT_EVALUATE_QUESTIONS (config.yaml phase2_prompts.prompt1 at HEAD, the
# same text): the evaluator LLM's prompt, filled by str.format with clarifying_questions (the
# model's whole round-1 reply), problem (the modified description) and missing_information (the
# original description), none of them stripped.
EVALUATOR_TEMPLATE = (
    "The original description of a coding problem is modified so that the requirements become "
    "inconsistent, incomplete, or ambiguous. Given the modified description, some clarifying questions "
    "were raised to clarify the description. Given the original and modified problem description, "
    "evaluate the quality of the clarifying questions. Please provide an integer representing the quality "
    "of questions (3: Good questions that recover the modified requirements; 2: Fair questions but they "
    "cannot help recover the modified requirements; 1: No questions).\n  QUALITY=[your int] \n Please also "
    "provide answers to the clarifying questions to recover the modified requirements in the original "
    "problem description compared to the modified one. If there is no clarifying questions at all, return "
    "empty answers. \n ANSWERS=```[your answer]```  \n Please strictly follow the format QUALITY=[the int] "
    "and ANSWERS=```[the answer]``` in the response! Surround your answer with markdown! \n\n ### "
    "Questions: {clarifying_questions} \n ### Modified Problem Description: {problem} \n ### Original "
    "Description: {missing_information} \n"
)

# generate_response.py, evaluate_clarifying_questions: the evaluator model and its temperature.
EVALUATOR_MODEL = "gpt-3.5-turbo-0125"
EVALUATOR_TEMPERATURE = 1.0

# generate_response.py, PROMPT_2ND_ROUND: appended to the evaluator's answers in round 2.
ROUND2_INSTRUCTION = (
    "\n Given above conversations, generate Python code directly (Markdown) to solve the coding problem:\n"
)

# scripts/sockeye_scripts/test_gpu_phase1.sh and test_gpu_phase3.sh (`--seq_length`, which
# generate_text passes to `model.generate(max_length=...)`: prompt plus reply): the open models'
# token budget in round 1 (and for the original prompts) and in round 2.
OPEN_MODEL_TOTAL_TOKENS = (512, 1024)

# jie-jw-wu/clarify-coder, fine-tuning/clarify_aware_fine_tuning_v2.py (commit 2ac7898), tokenize_v4:
# the paper's training rows are f"{QPROMPT} {problem}" + f"{APROMPT} {answer}", APROMPT chosen by
# `type == "Original"`. QPROMPT has no space before its newline, unlike ASK_OR_CODE_INSTRUCTION.
PAPER_V4_INSTRUCTION = (
    "You are an expert software developer who writes high quality code. With below "
    "information, please either generate Python3 code (Respond directly with code "
    "only with markdown), or ask clarifying questions:\n"
)
PAPER_V4_CLEAR_PREFIX = (
    "This is a clear problem requiring no clarifications. Let's generate the required "
    "Python3 code directly in markdown."
)
PAPER_V4_CLARIFY_PREFIX = (
    "I have a few clarifying questions. Please respond with the necessary details so I can assist further."
)


def paper_v4_text(problem: str, answer: str, clear: bool) -> str:
    """A training row's text as tokenize_v4 joins it (the tokenizer then adds BOS and EOS)."""
    prefix = PAPER_V4_CLEAR_PREFIX if clear else PAPER_V4_CLARIFY_PREFIX
    return f"{PAPER_V4_INSTRUCTION} {problem}" + f"{prefix} {answer}"
