"""SAM Lab entry point (placeholder until the pages land)."""
import streamlit as st

st.set_page_config(page_title="SAM Lab", layout="wide")
st.title("SAM Lab")
st.write("SGD vs SAM vs PSAM, interactively. Pages are on their way.")
